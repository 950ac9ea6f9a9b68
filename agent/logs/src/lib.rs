//! Follows nova-compute's log, parses oslo.log records and classifies their faults.
