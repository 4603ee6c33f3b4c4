//! How long the reconcilers wait: the constants every layer above shares.

use std::time::Duration;

/// How often an object is looked at again when nothing is happening: a
/// safety net, since every input is watched.
pub const SAFETY_NET: Duration = Duration::from_secs(300);

/// How long a cache is given to catch up with a write just made (the
/// ResourceSlice sweep looks again after this).
pub const RECHECK: Duration = Duration::from_secs(2);

/// How long a write the caches do not show yet is trusted to be on its way
/// (a created pod, a condition written): after that it is done again.
pub const CACHE_LAG: Duration = Duration::from_secs(30);
