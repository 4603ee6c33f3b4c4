//! One DeviceSet's looks: ask every discovery URL which servers it knows,
//! ask every such server for its endpoints, keep those that answer; and the
//! poll loop that sends a set only when it differs from the last one sent.
//!
//! ```text
//!   ┌─► discovery URLs ──FindServers (+ FindServersOnNetwork)──► candidates (filtered by type, name, URI)
//!   │        at most `concurrency` at once, each call within `timeout`            │
//!   │                                                                             ▼
//!   │   devices ◄── answered ◄──GetEndpoints, at most `concurrency` at once── candidates by URL
//!   └── sleep(interval) ◄── changed? send ◄─┘
//! ```
//!
//! A server is a device while it answers GetEndpoints; one that stops
//! answering leaves the set at the next look, and the agent keeps its
//! Device for the DeviceSet's grace period (`docs/agent.md`), so one lost
//! answer does not churn pods. A discovery URL (e.g. a Local Discovery
//! Server) that stops answering keeps its last list of candidates, which are
//! still each asked for their endpoints: the servers outlive their LDS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ambit_discovery::{Device, DeviceStream};
use futures::{StreamExt, stream};
use opcua::types::{ApplicationDescription, ApplicationType};
use tracing::{debug, info, warn};

use crate::details::Plan;
use crate::device::{self, Found};
use crate::probe::Prober;
use crate::url::OpcUrl;

/// A server some discovery URL named, not yet asked for its endpoints.
#[derive(Debug, Clone)]
struct Candidate {
    url: OpcUrl,
    via: OpcUrl,
    /// From FindServers; `None` for a FindServersOnNetwork record, whose
    /// description comes with its endpoints.
    application: Option<ApplicationDescription>,
}

/// Looks for one DeviceSet's servers, remembering what each discovery URL
/// answered last and which servers were failing.
#[derive(Debug)]
pub(crate) struct Scanner {
    plan: Plan,
    prober: Prober,
    known: BTreeMap<OpcUrl, Vec<Candidate>>,
    silent_urls: BTreeSet<OpcUrl>,
    silent_servers: BTreeSet<OpcUrl>,
    /// The last BuildInfo each server gave in a session, kept while an
    /// optional session fails, so its properties do not flap.
    build_infos: BTreeMap<OpcUrl, BTreeMap<String, String>>,
}

impl Scanner {
    pub(crate) fn new(plan: Plan, prober: Prober) -> Self {
        Self {
            plan,
            prober,
            known: BTreeMap::new(),
            silent_urls: BTreeSet::new(),
            silent_servers: BTreeSet::new(),
            build_infos: BTreeMap::new(),
        }
    }

    /// One complete look: every server that answered, sorted by id.
    pub(crate) async fn scan(&mut self) -> Vec<Device> {
        let started = Instant::now();
        let concurrency = self.plan.concurrency;
        let this = &*self;
        let answers: Vec<(OpcUrl, Result<Vec<Candidate>, String>)> =
            stream::iter(self.plan.discovery_urls.clone())
                .map(|url| async move {
                    let answer = this.ask(&url).await;
                    (url, answer)
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;

        let mut candidates: BTreeMap<OpcUrl, Candidate> = BTreeMap::new();
        for (url, answer) in answers {
            let listed = match answer {
                Ok(listed) => {
                    if self.silent_urls.remove(&url) {
                        info!(%url, servers = listed.len(), "discovery URL answers again");
                    }
                    self.known.insert(url.clone(), listed.clone());
                    listed
                }
                Err(why) => {
                    let listed = self.known.get(&url).cloned().unwrap_or_default();
                    if self.silent_urls.insert(url.clone()) {
                        warn!(%url, %why, servers = listed.len(), "discovery URL does not answer; asking the servers it named last");
                    }
                    listed
                }
            };
            for candidate in listed {
                candidates.entry(candidate.url.clone()).or_insert(candidate);
            }
        }
        if candidates.len() > self.plan.max_servers {
            warn!(
                servers = candidates.len(),
                max_servers = self.plan.max_servers,
                "more servers than maxServers; asking the first only"
            );
        }

        let this = &*self;
        let checked: Vec<(OpcUrl, Result<Option<Checked>, String>)> =
            stream::iter(candidates.into_values().take(self.plan.max_servers))
                .map(|candidate| async move {
                    let url = candidate.url.clone();
                    (url, this.check(candidate).await)
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;

        let mut devices: BTreeMap<String, Device> = BTreeMap::new();
        for (url, result) in checked {
            match result {
                Ok(checked) => {
                    if self.silent_servers.remove(&url) {
                        info!(%url, "server is back in the device set");
                    }
                    let Some(Checked { mut found, session }) = checked else {
                        continue;
                    };
                    match session {
                        Ok(build_info) => {
                            if !build_info.is_empty() {
                                self.build_infos.insert(url.clone(), build_info);
                            }
                        }
                        Err(why) => {
                            warn!(%url, %why, "session failed; the server stays a device (session.required is false)");
                        }
                    }
                    found.build_info = self.build_infos.get(&url).cloned().unwrap_or_default();
                    let device = device::device(&found);
                    devices.entry(device.id.clone()).or_insert(device);
                }
                Err(why) => {
                    if self.silent_servers.insert(url.clone()) {
                        info!(%url, %why, "server leaves the device set");
                    } else {
                        debug!(%url, %why, "server still out of the device set");
                    }
                }
            }
        }
        // Servers no discovery URL names any more are forgotten.
        let named: BTreeSet<&OpcUrl> = self.known.values().flatten().map(|c| &c.url).collect();
        self.silent_servers.retain(|url| named.contains(url));
        self.build_infos.retain(|url, _| named.contains(url));
        debug!(servers = devices.len(), took = ?started.elapsed(), "look done");
        devices.into_values().collect()
    }

    /// The candidates one discovery URL names: FindServers, and
    /// FindServersOnNetwork when asked for. An error only when it answered
    /// neither.
    async fn ask(&self, asked: &OpcUrl) -> Result<Vec<Candidate>, String> {
        let plan = &self.plan;
        let mut candidates = Vec::new();
        let found = self.prober.find_servers(asked).await;
        let found_error = match found {
            Ok(mut applications) => {
                if applications.len() > plan.max_servers {
                    warn!(url = %asked, servers = applications.len(), max_servers = plan.max_servers, "FindServers named more servers than maxServers; keeping the first");
                    applications.truncate(plan.max_servers);
                }
                let alone = applications.len() == 1;
                for application in applications {
                    let name = application.application_name.text.as_ref();
                    let uri = application.application_uri.as_ref();
                    if !plan.accepts(application.application_type, name, uri) {
                        debug!(url = %asked, application = %uri, "application filtered out");
                        continue;
                    }
                    match server_url(&application, asked, alone) {
                        Some(url) => candidates.push(Candidate {
                            url,
                            via: asked.clone(),
                            application: Some(application),
                        }),
                        None => {
                            debug!(url = %asked, application = %uri, "application names no opc.tcp discovery URL");
                        }
                    }
                }
                None
            }
            Err(why) => Some(why),
        };
        if !plan.find_servers_on_network {
            return match found_error {
                Some(why) => Err(why),
                None => Ok(candidates),
            };
        }
        match self.prober.find_servers_on_network(asked).await {
            Ok(records) => {
                for record in records.into_iter().take(plan.max_servers) {
                    let text = record.discovery_url.as_ref();
                    match OpcUrl::parse(text) {
                        Ok(url) => candidates.push(Candidate {
                            url,
                            via: asked.clone(),
                            application: None,
                        }),
                        Err(why) => {
                            debug!(url = %asked, %why, "FindServersOnNetwork record skipped");
                        }
                    }
                }
                Ok(candidates)
            }
            Err(why) => match found_error {
                Some(found_error) => Err(format!("{found_error}; {why}")),
                None => {
                    debug!(url = %asked, %why, "FindServersOnNetwork failed; using FindServers alone");
                    Ok(candidates)
                }
            },
        }
    }

    /// Asks one candidate for its endpoints. `Ok(None)`: it answered but is
    /// not wanted (a FindServersOnNetwork record filtered out now that its
    /// description is known).
    async fn check(&self, candidate: Candidate) -> Result<Option<Checked>, String> {
        let endpoints = self.prober.get_endpoints(&candidate.url).await?;
        let application = match candidate.application {
            Some(application) => application,
            None => {
                let Some(first) = endpoints.first() else {
                    return Err("GetEndpoints named no endpoint".to_owned());
                };
                let application = first.server.clone();
                let name = application.application_name.text.as_ref();
                let uri = application.application_uri.as_ref();
                if !self.plan.accepts(application.application_type, name, uri) {
                    return Ok(None);
                }
                application
            }
        };
        // With a session: its BuildInfo, or why there is none.
        let session = match self.prober.session_required() {
            None => Ok(BTreeMap::new()),
            Some(required) => match self.prober.build_info(&candidate.url, &endpoints).await {
                Ok(build_info) => Ok(build_info),
                Err(why) if required => return Err(format!("session required: {why}")),
                Err(why) => Err(why),
            },
        };
        Ok(Some(Checked {
            found: Found {
                url: candidate.url,
                via: candidate.via,
                application,
                endpoints,
                build_info: BTreeMap::new(),
            },
            session,
        }))
    }
}

/// A server that answered, and how its session went.
#[derive(Debug)]
struct Checked {
    found: Found,
    /// BuildInfo properties, or why the (optional) session failed.
    session: Result<BTreeMap<String, String>, String>,
}

/// Where to reach an application that `asked` named:
/// - `asked` itself when the application says it is there (one of its
///   discovery URLs has the same host and port), or when it is the only one
///   that answered and not a discovery server (a server answering for itself
///   under a host name of its own);
/// - else its first opc.tcp discovery URL, with the host `asked` has when it
///   advertised a wildcard address.
fn server_url(application: &ApplicationDescription, asked: &OpcUrl, alone: bool) -> Option<OpcUrl> {
    let advertised: Vec<OpcUrl> = application
        .discovery_urls
        .iter()
        .flatten()
        .filter_map(|url| OpcUrl::parse(url.as_ref()).ok())
        .collect();
    let itself = advertised.iter().any(|url| url.same_place(asked))
        || (alone && application.application_type != ApplicationType::DiscoveryServer);
    if itself {
        return Some(asked.clone());
    }
    let first = advertised.into_iter().next()?;
    Some(if first.host_is_unspecified() {
        first.with_host(&asked.host)
    } else {
        first
    })
}

/// The device sets of one DeviceSet: the first when the first look ends,
/// then a new one whenever a look finds a different set.
pub(crate) fn device_sets(plan: Plan, prober: Prober) -> DeviceStream {
    let interval = plan.interval;
    let state = (Scanner::new(plan, prober), None::<Vec<Device>>);
    let sets = stream::unfold(state, move |(mut scanner, mut last)| async move {
        loop {
            if last.is_some() {
                tokio::time::sleep(interval).await;
            }
            let set = scanner.scan().await;
            if last.as_ref() != Some(&set) {
                info!(devices = set.len(), "opcua device set changed");
                last = Some(set.clone());
                return Some((Ok(set), (scanner, last)));
            }
        }
    });
    Box::pin(sets.fuse())
}

#[cfg(test)]
mod tests {
    use opcua::types::{LocalizedText, UAString};

    use super::*;

    fn application(kind: ApplicationType, urls: &[&str]) -> ApplicationDescription {
        ApplicationDescription {
            application_uri: UAString::from("urn:test"),
            application_name: LocalizedText::new("", "test"),
            application_type: kind,
            discovery_urls: Some(urls.iter().map(|url| UAString::from(*url)).collect()),
            ..Default::default()
        }
    }

    fn url(text: &str) -> OpcUrl {
        OpcUrl::parse(text).unwrap()
    }

    #[test]
    fn a_server_that_says_it_is_here_keeps_the_url_asked() {
        let asked = url("opc.tcp://127.0.0.1:4840/");
        let app = application(
            ApplicationType::Server,
            &["opc.tcp://127.0.0.1:4840/ua/server/"],
        );
        assert_eq!(server_url(&app, &asked, false), Some(asked.clone()));
        // Alone and calling itself by another name: still the one asked.
        let app = application(ApplicationType::ClientAndServer, &["opc.tcp://plc-7:4840/"]);
        assert_eq!(server_url(&app, &asked, true), Some(asked.clone()));
    }

    #[test]
    fn servers_an_lds_names_are_reached_where_they_say() {
        let asked = url("opc.tcp://10.0.0.2:4840/");
        let app = application(
            ApplicationType::Server,
            &["http://x/", "opc.tcp://10.0.0.9:4841/a"],
        );
        assert_eq!(
            server_url(&app, &asked, false),
            Some(url("opc.tcp://10.0.0.9:4841/a"))
        );
        let app = application(ApplicationType::Server, &["opc.tcp://0.0.0.0:4841/"]);
        assert_eq!(
            server_url(&app, &asked, false),
            Some(url("opc.tcp://10.0.0.2:4841/"))
        );
        let app = application(ApplicationType::Server, &[]);
        assert_eq!(server_url(&app, &asked, false), None);
        // An LDS with nothing registered does not stand for a server.
        let lds = application(ApplicationType::DiscoveryServer, &["opc.tcp://lds:4840/"]);
        assert_eq!(
            server_url(&lds, &asked, true),
            Some(url("opc.tcp://lds:4840/"))
        );
    }
}
