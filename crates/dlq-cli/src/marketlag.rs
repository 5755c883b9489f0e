//! The MarketLag pipelines as a dlq [`Handler`]: validate, then hand the
//! record to a (possibly simulated, flaky) downstream.

use dlq_core::Failure;
use dlq_core::process::Handler;
use dlq_marketlag::{Limits, Pipeline, SimulatedDownstream};

/// Validates records of one pipeline and delivers them downstream.
#[derive(Debug, Clone)]
pub struct PipelineHandler {
    /// The pipeline whose validator runs.
    pub pipeline: Pipeline,
    /// Size limits.
    pub limits: Limits,
    /// The downstream the record goes to after validation.
    pub downstream: SimulatedDownstream,
}

impl PipelineHandler {
    /// A handler with a healthy downstream.
    pub fn healthy(pipeline: Pipeline) -> Self {
        PipelineHandler {
            pipeline,
            limits: Limits::default(),
            downstream: SimulatedDownstream::healthy(0),
        }
    }
}

impl Handler for PipelineHandler {
    fn handle(&mut self, payload: &[u8], attempt: u32) -> Result<Vec<u8>, Failure> {
        if let Err(e) = dlq_marketlag::validate(self.pipeline, payload, &self.limits) {
            return Err(Failure::permanent("validate", e.class, e.message));
        }
        if let Err(e) = self.downstream.attempt(payload, attempt) {
            return Err(Failure {
                stage: "sink".into(),
                error_class: e.class.into(),
                message: e.message,
                retryable: e.retryable,
            });
        }
        Ok(payload.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_records_fail_permanently_with_their_class() {
        let mut h = PipelineHandler::healthy(Pipeline::Polymarket);
        let err = h.handle(b"{not json", 1).expect_err("malformed");
        assert_eq!(err.error_class, "decode.malformed_json");
        assert!(!err.retryable);
        assert_eq!(err.stage, "validate");
    }

    #[test]
    fn flaky_downstream_fails_first_attempts_then_delivers() {
        let line = br#"{"event_id":"e1","market_id":"0x1111111111111111111111111111111111111111","question":"Will it rain?","outcome":"Yes","price":0.42,"volume":10.0,"timestamp":"2026-11-29T07:00:00Z"}"#;
        let mut h = PipelineHandler::healthy(Pipeline::Polymarket);
        h.downstream = SimulatedDownstream {
            seed: 1,
            transient_rate: 1.0,
            fail_first: 2,
            outage_rate: 0.0,
            outage_active: false,
        };
        let first = h.handle(line, 1).expect_err("attempt 1 fails");
        assert!(first.retryable);
        assert_eq!(first.error_class, "downstream.timeout");
        assert!(h.handle(line, 2).is_err());
        assert_eq!(h.handle(line, 3).expect("attempt 3"), line.to_vec());
    }
}
