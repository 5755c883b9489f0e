//! Scans: pages of the selected records, resumed from a cursor.

use super::*;

/// Fewest records fetched at a time while a scan fills a page (it fetches
/// what the page still needs in one go when that is more).
pub(super) const SCAN_CHUNK: usize = 64;

/// `v1;<topic>/<partition>=<next offset>;…`: where each partition's scan
/// resumes (partitions not listed start at their beginning).
pub(super) fn encode_cursor(positions: &BTreeMap<(String, i32), i64>) -> Cursor {
    let mut s = String::from("v1");
    for ((t, p), o) in positions {
        s.push_str(&format!(";{t}/{p}={o}"));
    }
    Cursor(s)
}

pub(super) fn decode_cursor(cursor: &Cursor) -> Result<BTreeMap<(String, i32), i64>> {
    let bad = || failure(format!("invalid scan cursor {:?}", cursor.0), false);
    let mut parts = cursor.0.split(';');
    if parts.next() != Some("v1") {
        return Err(bad());
    }
    let mut out = BTreeMap::new();
    for part in parts {
        let (tp, o) = part.rsplit_once('=').ok_or_else(bad)?;
        let (t, p) = tp.rsplit_once('/').ok_or_else(bad)?;
        let p: i32 = p.parse().map_err(|_| bad())?;
        let o: i64 = o.parse().map_err(|_| bad())?;
        out.insert((t.to_owned(), p), o);
    }
    Ok(out)
}

/// A record a scan looks at: kept decoded from the index's read, or read
/// again. Held only for one chunk of a scan; boxing the larger variant would
/// cost an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Found {
    Decoded(Decoded),
    Fetched(Fetched),
}

impl KafkaStore {
    /// A page of [`DlqStore::scan`]; without `refresh`, from the index as
    /// it stands (brought up to date by an earlier call and by the store's
    /// own commits), which saves the round trips for metadata and
    /// watermarks on every page of a long scan.
    pub(crate) fn scan_page(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
        refresh: bool,
    ) -> Result<ScanPage> {
        let mut positions = match after {
            Some(c) => decode_cursor(c)?,
            None => BTreeMap::new(),
        };
        let mut inner = self.lock();
        if after.is_none() {
            // A new scan: what an earlier one left is stale.
            inner.decoded.clear();
        }
        let refreshed = match &selection.dlq {
            Some(d) if !self.is_dlq(d) => return Ok(ScanPage::default()),
            _ if !refresh => Ok(()),
            dlq => {
                inner.decoded.filling = true;
                let r = match dlq {
                    Some(d) => inner.refresh(&self.config, Scope::Only(std::slice::from_ref(d))),
                    None => inner.refresh(&self.config, Scope::All),
                };
                inner.decoded.filling = false;
                r
            }
        };
        refreshed?;

        let mut page = ScanPage::default();
        if limit == 0 {
            page.next = Some(encode_cursor(&positions));
            return Ok(page);
        }
        let inner = &mut *inner;
        let names: Vec<String> = inner
            .dlqs
            .keys()
            .filter(|n| selection.dlq.as_deref().is_none_or(|d| d == n.as_str()))
            .cloned()
            .collect();
        for name in names {
            let Some(di) = inner.dlqs.get(&name) else {
                continue;
            };
            for (p, part) in di.parts.iter().enumerate() {
                let p = p as i32;
                let mut pos = positions.get(&(name.clone(), p)).copied().unwrap_or(0);
                inner.decoded.drop_below(&name, p, pos);
                loop {
                    let candidates: Vec<i64> = part
                        .recs
                        .range(pos..)
                        .filter(|(o, r)| {
                            !r.dup && selection.wants_status(inner.status(&name, r, p, **o))
                        })
                        .map(|(o, _)| *o)
                        .take(SCAN_CHUNK.max(limit.saturating_sub(page.records.len())))
                        .collect();
                    let Some(&last) = candidates.last() else {
                        break;
                    };
                    // Kept from the index's read where it could, read
                    // again where not.
                    let mut found: Vec<(i64, Found)> = Vec::with_capacity(candidates.len());
                    let mut missing: Vec<i64> = Vec::new();
                    for &o in &candidates {
                        match inner.decoded.take(&name, p, o) {
                            Some(d) => found.push((o, Found::Decoded(d))),
                            None => missing.push(o),
                        }
                    }
                    if !missing.is_empty() {
                        let fetched = inner.client.fetch(&name, p, &missing)?;
                        found.extend(fetched.into_iter().map(|f| (f.offset, Found::Fetched(f))));
                        found.sort_by_key(|(o, _)| *o);
                    }
                    let mut found = found.into_iter();
                    while let Some((offset, item)) = found.next() {
                        let record = match item {
                            Found::Decoded(d) => inner.stored(
                                &self.config,
                                &name,
                                (p, offset),
                                d.letter,
                                d.timestamp,
                            )?,
                            Found::Fetched(f) => inner.materialize(&self.config, &name, f)?,
                        };
                        pos = offset + 1;
                        if selection.matches(&record) {
                            page.records.push(record);
                            if page.records.len() >= limit {
                                // What the page had no room for stays for
                                // the next one.
                                for (o, item) in found {
                                    if let Found::Decoded(d) = item {
                                        inner.decoded.put_back(&name, p, o, d);
                                    }
                                }
                                positions.insert((name.clone(), p), pos);
                                if inner.more_after(selection, &positions) {
                                    page.next = Some(encode_cursor(&positions));
                                } else {
                                    inner.decoded.clear();
                                }
                                return Ok(page);
                            }
                        }
                    }
                    pos = last + 1;
                }
                positions.insert((name.clone(), p), pos.max(part.next));
            }
        }
        inner.decoded.clear();
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_roundtrip_and_reject_garbage() {
        let mut m = BTreeMap::new();
        m.insert(("dlq.a.b".to_owned(), 0), 5);
        m.insert(("dlq.c".to_owned(), 12), 0);
        let c = encode_cursor(&m);
        assert_eq!(decode_cursor(&c).expect("decode"), m);
        assert!(decode_cursor(&Cursor("17".into())).is_err());
        assert!(decode_cursor(&Cursor("v1;x=1".into())).is_err());
    }
}
