#!/usr/bin/env bash
# Refreshes the third-party files of the dashboard in web/vendor/.
#
# cargo never runs npm: the dashboard is embedded from committed files, so
# `cargo build` works offline. To change the chart library's version, edit
# web/package.json, run `npm install --package-lock-only` in web/, then this
# script, and commit web/package*.json and web/vendor/ together.
set -euo pipefail
cd "$(dirname "$0")/../web"

npm ci --no-audit --no-fund --ignore-scripts
dist=node_modules/uplot/dist
cp "$dist/uPlot.iife.min.js" vendor/uPlot.iife.min.js
cp "$dist/uPlot.min.css" vendor/uPlot.min.css
cp node_modules/uplot/LICENSE vendor/LICENSE-uPlot
version="$(node -p 'require("./node_modules/uplot/package.json").version')"
echo "uPlot $version (MIT, https://github.com/leeoniya/uPlot)" > vendor/README
echo "vendored uPlot $version into web/vendor/"
