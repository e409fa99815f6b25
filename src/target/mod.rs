//! Where a product's stores and alerts write. What differs between the targets lives in one
//! module each: [`local`] (the data dir) and [`gcp`] (Google Cloud): their stores, and the names
//! of their destinations, which [`Destination`] gives the plan, the receipt, the run summary and
//! the logs alike.

pub(crate) mod gcp;
pub(crate) mod local;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::alert::channel::Channel;
use crate::secrets::Secrets;
use crate::spec::Call;
use crate::store::local::{documents_path, warehouse_dir};

/// The closed set of targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Embedded: a Parquet warehouse, a SQLite document store and an outbox folder in the data dir.
    #[default]
    Local,
    /// Google Cloud: BigQuery, Firestore, Secret Manager and SendGrid.
    Gcp,
}

/// Where `${secret:NAME}` references are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretSource {
    /// The environment, then a `.env` file in the working folder.
    Env,
    /// Secret Manager, in the product's project.
    SecretManager,
}

impl SecretSource {
    /// The target's own: Secret Manager on gcp, the environment locally.
    pub fn of(target: Target) -> Self {
        match target {
            Target::Gcp => SecretSource::SecretManager,
            Target::Local => SecretSource::Env,
        }
    }

    /// As `--secrets` and plans spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretSource::Env => "env",
            SecretSource::SecretManager => "secret-manager",
        }
    }

    /// The run's secrets, read from this source.
    pub(crate) fn secrets(self) -> Secrets {
        match self {
            SecretSource::SecretManager => Secrets::from_secret_manager(),
            SecretSource::Env => Secrets::new(),
        }
    }
}

/// Where alerts go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertSink {
    /// Through the target's channels: SendGrid and Slack on gcp, the outbox locally.
    #[default]
    Deliver,
    /// The local outbox on any target: a product can be tried without e-mailing anyone.
    Outbox,
}

impl AlertSink {
    /// The target whose channels alerts of a run on `target` use.
    pub fn target(self, target: Target) -> Target {
        match self {
            AlertSink::Deliver => target,
            AlertSink::Outbox => Target::Local,
        }
    }
}

impl Target {
    /// The target's name, as `--target` and receipts spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Gcp => "gcp",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The data dir of the local target when neither `--data-dir` nor `DPF_DATA_DIR` is given.
pub const DEFAULT_DATA_DIR: &str = ".dpf";

/// `--data-dir`, else `DPF_DATA_DIR`, else [`DEFAULT_DATA_DIR`].
pub fn data_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("DPF_DATA_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Where a store or an alert writes, on either target: the one name that the plan, the receipt,
/// the run summary and the logs all show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A table of the local warehouse: its folder of Parquet versions.
    Warehouse {
        data_dir: PathBuf,
        dataset: String,
        table: String,
    },
    /// A collection of the local document store.
    DocumentStore {
        data_dir: PathBuf,
        collection: String,
    },
    /// The local outbox folder, for one channel.
    Outbox {
        data_dir: PathBuf,
        channel: Channel,
    },
    BigQuery {
        project: String,
        dataset: String,
        table: String,
    },
    Firestore {
        project: String,
        collection: String,
    },
    /// SendGrid's v3 `mail/send` API.
    SendGrid,
    /// A Slack incoming webhook.
    SlackWebhook,
}

impl Destination {
    /// Where `call` writes on `target`, if it writes; `project` is the Google Cloud project the
    /// store resolves to on the gcp target.
    pub fn of(call: &Call, target: Target, data_dir: &Path, project: impl Fn(Option<&str>) -> String) -> Vec<Self> {
        let data_dir = data_dir.to_path_buf();
        match (call, target) {
            (Call::StoreToBigquery(store), Target::Local) => vec![Destination::Warehouse {
                data_dir,
                dataset: store.dataset.clone(),
                table: store.table.clone(),
            }],
            (Call::StoreToBigquery(store), Target::Gcp) => vec![Destination::BigQuery {
                project: project(store.project.as_deref()),
                dataset: store.dataset.clone(),
                table: store.table.clone(),
            }],
            (Call::StoreToFirestore(store), Target::Local) => vec![Destination::DocumentStore {
                data_dir,
                collection: store.collection.clone(),
            }],
            (Call::StoreToFirestore(store), Target::Gcp) => vec![Destination::Firestore {
                project: project(store.project.as_deref()),
                collection: store.collection.clone(),
            }],
            // `target` is where the alerts go (see [`AlertSink::target`]).
            (Call::SendAlerts(alert), target) => alert
                .channels
                .iter()
                .map(|&channel| Destination::of_channel(channel, target, &data_dir))
                .collect(),
            // A query in BigQuery writes its result where a store of its `destination` would.
            (Call::TransformSql(transform), target) => match (&transform.destination, transform.engine) {
                (Some(store), crate::transform::sql::Engine::Bigquery) => {
                    Self::of(&Call::StoreToBigquery(store.clone()), target, &data_dir, project)
                }
                _ => Vec::new(),
            },
            (Call::ExtractHttp(_) | Call::ExtractWeather(_), _) => Vec::new(),
        }
    }

    /// [`Destination::of`] as the plan, receipts and logs show each destination.
    pub fn names(
        call: &Call,
        target: Target,
        data_dir: &Path,
        project: impl Fn(Option<&str>) -> String,
    ) -> Vec<String> {
        Self::of(call, target, data_dir, project)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Where an alert's `channel` goes on `target`.
    pub fn of_channel(channel: Channel, target: Target, data_dir: &Path) -> Self {
        match (channel, target) {
            (channel, Target::Local) => Destination::Outbox {
                data_dir: data_dir.to_path_buf(),
                channel,
            },
            (Channel::Email, Target::Gcp) => Destination::SendGrid,
            (Channel::Slack, Target::Gcp) => Destination::SlackWebhook,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Warehouse {
                data_dir,
                dataset,
                table,
            } => write!(f, "{}", warehouse_dir(data_dir).join(dataset).join(table).display()),
            Destination::DocumentStore { data_dir, collection } => {
                write!(f, "{} (collection {collection})", documents_path(data_dir).display())
            }
            Destination::Outbox { data_dir, channel } => write!(f, "{} ({channel})", outbox_dir(data_dir).display()),
            Destination::BigQuery {
                project,
                dataset,
                table,
            } => write!(f, "bigquery:{project}.{dataset}.{table}"),
            Destination::Firestore { project, collection } => {
                write!(
                    f,
                    "firestore:projects/{project}/databases/(default)/documents/{collection}"
                )
            }
            Destination::SendGrid => f.write_str("sendgrid:v3/mail/send"),
            Destination::SlackWebhook => f.write_str("slack:webhook"),
        }
    }
}

/// `<data-dir>/outbox`: where the local target's alerts go.
pub fn outbox_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("outbox")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_read_as_their_service_names_them() {
        let shown = |d: Destination| d.to_string();
        let data_dir = PathBuf::from(".dpf");
        assert_eq!(
            shown(Destination::Warehouse {
                data_dir: data_dir.clone(),
                dataset: "d".into(),
                table: "t".into()
            }),
            ".dpf/warehouse/d/t"
        );
        assert_eq!(
            shown(Destination::Firestore {
                project: "p".into(),
                collection: "c".into()
            }),
            "firestore:projects/p/databases/(default)/documents/c"
        );
        assert_eq!(
            shown(Destination::of_channel(Channel::Email, Target::Local, &data_dir)),
            ".dpf/outbox (email)"
        );
        assert_eq!(
            shown(Destination::of_channel(Channel::Email, Target::Gcp, &data_dir)),
            "sendgrid:v3/mail/send"
        );
    }
}
