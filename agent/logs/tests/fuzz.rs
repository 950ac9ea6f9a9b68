//! Property tests: arbitrary bytes through the splitter, joiner, classifier and
//! tracker never panic and never lose a line.

use novamedic_logs::{Catalogue, FaultTracker, Joiner, LineSplitter};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};
use time::UtcOffset;

fn catalogue() -> Arc<Catalogue> {
    static CATALOGUE: OnceLock<Arc<Catalogue>> = OnceLock::new();
    CATALOGUE
        .get_or_init(|| Arc::new(Catalogue::shipped().0))
        .clone()
}

/// Pieces that make the generator hit record starts, tracebacks and signatures.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"2026-03-02 10:00:00.000 7 ERROR nova.compute.manager [-] ".to_vec()),
        Just(b"2026-03-02 10:00:00.000 7 ERROR nova.compute.manager Traceback".to_vec()),
        Just(b"2012-07-05 22:00:31 TRACE nova.rpc.amqp ".to_vec()),
        Just(b"2013-05-13 15:59:38.717 INFO x [req-".to_vec()),
        Just(b"[instance: 84203083-59b4-41be-b4b7-c2739eb55ccd] ".to_vec()),
        Just(b"Mar  5 04:17:54 h nova_compute[1]: ".to_vec()),
        Just(b"AMQP server on h:5672 is unreachable ".to_vec()),
        Just(b"Reconnected to AMQP server".to_vec()),
        Just(b"libvirtError ImageNotFound \xff\xfe".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    proptest::collection::vec(pieces, 0..48).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_accounts_for_every_line(input in fragment(), chunk in 1usize..97) {
        let expected_lines = if input.is_empty() {
            0
        } else {
            input.iter().filter(|b| **b == b'\n').count() as u64
                + u64::from(*input.last().unwrap_or(&b'\n') != b'\n')
        };
        let mut splitter = LineSplitter::new();
        let mut joiner = Joiner::new();
        let mut tracker = FaultTracker::new(catalogue(), UtcOffset::UTC);
        let mut lines_in_records = 0u64;
        let mut on_line = |line: &[u8], truncated: u64| {
            if let Some(record) = joiner.push_line(line, truncated) {
                lines_in_records += record.line_count;
                tracker.observe(record);
            }
        };
        for piece in input.chunks(chunk) {
            splitter.feed(piece, &mut on_line);
        }
        splitter.finish(&mut on_line);
        if let Some(record) = joiner.finish() {
            lines_in_records += record.line_count;
            tracker.observe(record);
        }
        tracker.check_silence(i64::MAX / 4);
        let summary = tracker.summary(0);
        prop_assert!(summary.active.iter().all(|f| f.sample.len() <= 512));
        prop_assert_eq!(joiner.lines_read(), expected_lines);
        prop_assert_eq!(lines_in_records, expected_lines);
    }
}
