// The golden tests read captures with the crate's own reader
// (`softverbs_wire::capture`, feature `pcap`), the one `softverbs decode` uses.

pub use softverbs_wire::capture::*;
