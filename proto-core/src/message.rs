//! Message-level formats shared with the store: properties, sys flags, stored records, batch
//! bodies and message ids. `store-core` owns these layouts because they are what it writes to
//! disk; a pull response carries stored records byte for byte, so the wire reuses them here.

pub use store_core::format::*;
