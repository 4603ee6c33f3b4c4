//! Leader election through a Lease, and knowing when it is lost without a
//! word.
//!
//! kube-lease-manager takes the Lease and renews it ahead of expiry (a third
//! of its duration ahead), but it hides API errors: while renewals fail it
//! keeps saying "leading". So while this replica leads, a guard reads the
//! Lease shortly before it would expire (one GET per lease duration, which
//! the chart's RBAC allows): renewed, it is held a while longer; not renewed
//! by the time it expires — the API unreachable, or another holder — another
//! replica may lead by now, and the election ends with [`Error::Expired`]:
//! the process stops writing and exits, as client-go's "leader election
//! lost" does.
//!
//! ```text
//!  kube-lease-manager ─ changed() ─► leading (watch channel) ─► run: start / stop the controllers
//!  guard, while leading: GET the Lease at expiry − duration/6 ─ renewed? ─ yes ─► held until renewTime + duration
//!                                                                          └ no, and expired ─► Expired
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::LeaseManager;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Why leader election ended.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Lease was held by this replica and expired unrenewed.
    #[error("Lease {lease} was not renewed before it expired; another replica may lead now")]
    Expired {
        /// The Lease.
        lease: String,
    },
}

/// What the election needs.
pub struct Election {
    /// Takes and renews the Lease.
    pub manager: Arc<LeaseManager>,
    /// The Lease's namespace, to read it.
    pub leases: Api<Lease>,
    /// Its name.
    pub lease: String,
    /// This replica's identity in it.
    pub identity: String,
    /// How long the Lease lasts unrenewed.
    pub duration: Duration,
}

/// Runs the election, saying in `leading` whether this replica leads, until
/// the held Lease expires unrenewed.
pub async fn elect(election: Election, leading: watch::Sender<bool>) -> Result<(), Error> {
    let lead = leading.subscribe();
    tokio::select! {
        never = acquire(&election.manager, &leading, election.duration) => match never {},
        error = guard(&election, lead) => Err(error),
    }
}

/// While this replica leads, checks that its Lease is renewed in time.
async fn guard(election: &Election, mut lead: watch::Receiver<bool>) -> Error {
    let margin = election.duration / 6;
    loop {
        while !*lead.borrow_and_update() {
            if lead.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
        // Just taken: held for a lease duration from about now.
        let mut until = SystemTime::now() + election.duration;
        let mut not_before = Instant::now();
        loop {
            let check = instant(until.checked_sub(margin).unwrap_or(until)).max(not_before);
            tokio::select! {
                _ = lead.changed() => if !*lead.borrow() {
                    break;
                },
                () = tokio::time::sleep_until(check) => {
                    let read = tokio::time::timeout_at(instant(until), election.leases.get(&election.lease));
                    match read.await {
                        Ok(Ok(lease)) => until = until.max(renewed_until(&lease, &election.identity).unwrap_or(until)),
                        Ok(Err(error)) => debug!(%error, "failed to read the Lease"),
                        Err(_) => {}
                    }
                    if SystemTime::now() >= until {
                        return Error::Expired { lease: election.lease.clone() };
                    }
                    not_before = Instant::now() + Duration::from_millis(250);
                }
            }
        }
    }
}

/// Asks kube-lease-manager, again and again, whether this replica leads.
async fn acquire(
    manager: &LeaseManager,
    leading: &watch::Sender<bool>,
    duration: Duration,
) -> Infallible {
    let mut failures = 0;
    loop {
        match manager.changed().await {
            Ok(lead) => {
                failures = 0;
                leading.send_replace(lead);
            }
            Err(error) => {
                failures += 1;
                warn!(%error, failures, "failed to take or renew the Lease; retrying");
                tokio::time::sleep(retry_delay(failures, duration)).await;
            }
        }
    }
}

/// Releases the Lease (if this replica holds it), retrying for up to
/// `within`. Returns whether it was released.
pub async fn release(manager: &LeaseManager, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut failures = 0;
    loop {
        match tokio::time::timeout_at(deadline, manager.release()).await {
            Ok(Ok(())) => return true,
            Ok(Err(error)) => {
                failures += 1;
                debug!(%error, "failed to release the Lease; retrying");
                let delay = retry_delay(failures, within);
                if Instant::now() + delay >= deadline {
                    return false;
                }
                tokio::time::sleep(delay).await;
            }
            Err(_) => return false,
        }
    }
}

/// When a Lease held by `identity` expires unless renewed; `None` when
/// another holds it (or nobody).
fn renewed_until(lease: &Lease, identity: &str) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    let renewed = SystemTime::from(spec.renew_time.as_ref()?.0);
    renewed.checked_add(Duration::from_secs(seconds))
}

/// The tokio instant of a wall-clock time (now, if it has passed).
fn instant(at: SystemTime) -> Instant {
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + left
}

/// 100 ms, doubling, capped at a sixth of the lease duration (so a leader
/// retries a failed renewal a few times before its Lease expires), ± 20 %.
fn retry_delay(failures: u32, duration: Duration) -> Duration {
    let cap = (duration / 6).max(Duration::from_millis(200));
    let base = Duration::from_millis(100).saturating_mul(1 << failures.saturating_sub(1).min(8));
    base.min(cap).mul_f64(0.8 + fastrand::f64() * 0.4)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn lease(holder: Option<&str>, renewed: i64, seconds: Option<i32>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
                lease_duration_seconds: seconds,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_held_here_lasts_from_its_renewal_for_its_duration() {
        let held = lease(Some("c1"), 1_000, Some(10));
        assert_eq!(
            renewed_until(&held, "c1"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_010))
        );
    }

    #[test]
    fn a_lease_held_elsewhere_or_by_nobody_says_nothing() {
        assert_eq!(
            renewed_until(&lease(Some("c2"), 1_000, Some(10)), "c1"),
            None
        );
        assert_eq!(renewed_until(&lease(None, 1_000, Some(10)), "c1"), None);
        assert_eq!(renewed_until(&lease(Some("c1"), 1_000, None), "c1"), None);
        assert_eq!(renewed_until(&Lease::default(), "c1"), None);
    }

    #[test]
    fn retries_come_several_times_within_a_lease_duration() {
        let duration = Duration::from_secs(10);
        assert!(retry_delay(1, duration) <= Duration::from_millis(120));
        assert!(retry_delay(20, duration) <= Duration::from_secs(2));
        assert!(retry_delay(20, duration) >= Duration::from_millis(1300));
    }
}
