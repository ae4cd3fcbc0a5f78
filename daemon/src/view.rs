//! The API's views of what the daemon knows: `/v1/status`, one container, and the one
//! container lookup (by name, full id or unique id prefix, as `docker` does) that every
//! endpoint and command naming a container goes through.

use std::collections::HashMap;

use netmode_advisor::api::{self, Live};

use crate::docker::inventory::Record;
use crate::error::RequestError;
use crate::state::{Shared, now_ms};

impl Shared {
    /// A container as the API shows it: inventory, live traffic, latest probes and
    /// recommendation.
    fn view(
        &self,
        mut c: api::Container,
        live: &HashMap<String, Live>,
        recommendations: Option<&api::Recommendations>,
    ) -> api::Container {
        c.live = live.get(&c.id).cloned();
        c.probes = self.probes.latest(&c.name);
        c.recommendation = recommendations.and_then(|r| {
            r.containers
                .iter()
                .find(|x| x.id == c.id)
                .map(|x| x.recommendation.clone())
        });
        c
    }

    /// `GET /v1/status`: everything, containers sorted by name.
    pub fn status(&self) -> api::Status {
        let inv = self.inventory();
        let live = self.live();
        let recommendations = self.recommendations();
        let mut containers: Vec<api::Container> = inv
            .into_values()
            .map(|r| self.view(r.info, &live, recommendations.as_ref()))
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        api::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api: api::API_VERSION.to_string(),
            generated_at_ms: now_ms(),
            host: self.host(),
            docker: self.docker(),
            containers,
            probe: self.probes.status(),
            advisor: recommendations.map(|r| api::AdvisorSummary {
                mode: r.mode,
                network_active: r.network_active,
                crossover: r.crossover,
            }),
        }
    }

    /// Find a running container by exact name, full id, or unique id prefix. The errors are
    /// the API's: 404 when nothing matches, 400 when a prefix matches several.
    pub fn container(&self, key: &str) -> Result<api::Container, RequestError> {
        let inv = self.inventory();
        let found = lookup(inv.values(), key)?;
        Ok(self.view(
            found.info.clone(),
            &self.live(),
            self.recommendations().as_ref(),
        ))
    }
}

/// The lookup itself, over any set of records.
pub fn lookup<'a>(
    records: impl Iterator<Item = &'a Record> + Clone,
    key: &str,
) -> Result<&'a Record, RequestError> {
    let key = key.trim_start_matches('/');
    let not_found =
        || RequestError::NotFound(format!("no running container named or with id {key:?}"));
    if let Some(r) = records.clone().find(|r| r.info.name == key) {
        return Ok(r);
    }
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let hits: Vec<&Record> = records.filter(|r| r.info.id.starts_with(key)).collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(not_found()),
        many => Err(RequestError::Invalid(format!(
            "id prefix {key:?} matches several containers ({}); give more of the id",
            many.iter()
                .map(|r| r.info.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmode_advisor::api::ModeKind;

    fn rec(id: &str, name: &str) -> Record {
        Record {
            info: crate::testing::container(id, name, "bridge", ModeKind::Bridge),
            started_ns: 0,
        }
    }

    #[test]
    fn names_ids_and_prefixes_as_docker_takes_them() {
        let all = [
            rec("abc123", "web"),
            rec("abd456", "db"),
            rec("ff00", "cafe"),
        ];
        let find = |k: &str| lookup(all.iter(), k).map(|r| r.info.name.clone());
        assert_eq!(find("web").unwrap(), "web");
        assert_eq!(find("/db").unwrap(), "db");
        assert_eq!(find("abc").unwrap(), "web");
        assert_eq!(find("abd456").unwrap(), "db");
        // A name wins over an id prefix that happens to look like it.
        assert_eq!(find("cafe").unwrap(), "cafe");
        let e = find("ab").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string().contains("web, db") || e.to_string().contains("db, web"),
            "{e}"
        );
        for missing in ["nope", "0", ""] {
            let e = find(missing).unwrap_err();
            assert_eq!(e.status(), 404, "{missing}");
            assert!(e.to_string().contains("no running container"), "{e}");
        }
    }
}
