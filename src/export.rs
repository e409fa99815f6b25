//! Schedules for the schedulers dpf leaves the scheduling to: crontab lines, Kubernetes CronJobs, and
//! Cloud Run Jobs with the Cloud Scheduler jobs that start them. Pure: products in, text out.

use std::collections::HashMap;
use std::path::Path;

use crate::plan::schedule;
use crate::spec::Product;

/// Where and how the exported schedules run dpf.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The container image (Kubernetes, Cloud Run).
    pub image: String,
    /// The target the scheduled runs use.
    pub target: &'static str,
    /// The folder crontab runs dpf in (holds `products/` and the data dir).
    pub workdir: String,
    /// Where crontab runs append their logs.
    pub log_dir: String,
    /// The dpf binary crontab runs.
    pub binary: String,
    /// Cloud Run and Cloud Scheduler region.
    pub region: String,
}

/// The exit codes no retry can change: a permanent failure, an invalid product, an overlapping
/// run, data that failed a check.
pub(crate) const NOT_RETRIED: [u8; 4] = [1, 2, 3, 65];

/// A name Kubernetes and Cloud Run accept (DNS-1123 label, at most 52 characters so that the jobs a
/// CronJob creates stay within 63), from a product name.
pub(crate) fn job_name(product: &str) -> String {
    let mut name: String = format!("dpf-{product}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(52);
    name.trim_end_matches('-').to_owned()
}

fn scheduled<'a>(products: &[&'a Product]) -> Vec<(&'a Product, String)> {
    products
        .iter()
        .filter_map(|p| p.schedule.clone().map(|cron| (*p, cron)))
        .collect()
}

/// `cron` as every scheduler takes it: Kubernetes refuses `7` for Sunday, Cloud Scheduler the
/// `@daily`-style nicknames; both take the five fields this writes for the same times.
fn portable(cron: &str) -> String {
    let cron = match cron.trim() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    let mut fields: Vec<String> = cron.split_whitespace().map(str::to_owned).collect();
    if let Some(days) = fields.get_mut(4) {
        let items: Vec<String> = days
            .split(',')
            .map(|item| match item.split_once('-') {
                _ if item == "7" => "0".to_owned(),
                Some(("7", "7")) => "0".to_owned(),
                Some((from, "7")) => format!("{from}-6,0"),
                _ => item.to_owned(),
            })
            .collect();
        *days = items.join(",");
    }
    fields.join(" ")
}

fn describe(cron: &str) -> String {
    schedule::parse(cron).map_or_else(|_| cron.to_owned(), |c| schedule::describe(&c))
}

/// Products without a schedule, named in a comment so that leaving them out is visible.
fn unscheduled_note(products: &[&Product], comment: &str) -> String {
    let names: Vec<&str> = products
        .iter()
        .filter(|p| p.schedule.is_none())
        .map(|p| p.name.as_str())
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!("{comment} Not scheduled (no `schedule:`): {}\n", names.join(", "))
    }
}

/// `text` as one shell word: as is when it is plain, else single-quoted.
pub(crate) fn quote_shell(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':' | '=' | '+' | '@' | ','))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// crontab lines: one per product, each with the folder its file is in (`products`: each product and
/// that folder, as given to the export), its JSON log lines appended to a file per product in a
/// folder the line creates (the text summary on stdout would break them; the logs say the same). dpf's run lock keeps a slow run from overlapping the next (the late one exits 3 at once).
/// cron ends a command at an unescaped `%`: every `%` is escaped.
pub(crate) fn crontab(products: &[(&Product, &Path)], settings: &Settings) -> String {
    let folders: HashMap<&str, &Path> = products.iter().map(|(p, folder)| (p.name.as_str(), *folder)).collect();
    let products: Vec<&Product> = products.iter().map(|(p, _)| *p).collect();
    let mut out = String::from(
        "# dpf schedules for crontab: install with `crontab FILE` (or append to an existing crontab).\n\
         # A run still going when its next tick comes keeps its lock: the new one exits 3 and runs nothing.\n\
         # CRON_TZ is honoured by cronie and most modern crons; Debian's cron ignores it and uses the system zone.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/bin:/usr/bin:/bin\n",
    );
    out.push_str(&unscheduled_note(&products, "#"));
    for (product, cron) in scheduled(&products) {
        let log = format!("{}/{}.log", settings.log_dir, product.name);
        let folder = folders[product.name.as_str()].display().to_string();
        // A product that runs as shards gets a line per shard, all started at once.
        let shards: Vec<String> = match product.shards.filter(|&n| n > 1) {
            Some(count) => (0..count).map(|index| format!(" --shard {index}/{count}")).collect(),
            None => vec![String::new()],
        };
        out.push_str(&format!(
            "\n# {}: {}\nCRON_TZ={}\n",
            product.name,
            describe(&cron),
            product.timezone
        ));
        for shard in shards {
            let command = format!(
                "cd {} && mkdir -p {} && {} run {}{shard} --products {} --target {} --log-format json > /dev/null 2>> {}",
                quote_shell(&settings.workdir),
                quote_shell(&settings.log_dir),
                quote_shell(&settings.binary),
                product.name,
                quote_shell(if folder.is_empty() { "." } else { &folder }),
                settings.target,
                quote_shell(&log),
            );
            out.push_str(&format!("{cron} {}\n", command.replace('%', "\\%")));
        }
    }
    out
}

fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// Kubernetes CronJobs (batch/v1), one YAML document per product.
pub(crate) fn kubernetes(products: &[&Product], settings: &Settings) -> String {
    let mut out = String::from("# dpf schedules as Kubernetes CronJobs: apply with `kubectl apply -f FILE`.\n");
    out.push_str(&unscheduled_note(products, "#"));
    let codes: Vec<String> = NOT_RETRIED.iter().map(u8::to_string).collect();
    for (product, cron) in scheduled(products) {
        let name = job_name(&product.name);
        out.push_str(&format!(
            r#"---
# {product_name}: {description}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
  labels:
    app.kubernetes.io/name: dpf
    app.kubernetes.io/instance: {name}
spec:
  schedule: {cron}
  timeZone: {timezone}
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 600
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 3
  jobTemplate:
    spec:
      backoffLimit: {retries}{indexed}
      podFailurePolicy:
        rules:
          # 1 permanent failure, 2 invalid product, 3 another run holds the lock, 65 the data failed a
          # check: a retry cannot help.
          - action: FailJob
            onExitCodes:
              containerName: dpf
              operator: In
              values: [{codes}]
          - action: Ignore
            onPodConditions:
              - type: DisruptionTarget
                status: "True"
      template:
        metadata:
          labels:
            app.kubernetes.io/name: dpf
            app.kubernetes.io/instance: {name}
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 60
          # The Pod Security "restricted" profile: non-root, no privilege escalation, no capabilities,
          # the runtime's seccomp profile, a read-only root; the data dir (the run lock) is an emptyDir.
          securityContext:
            runAsNonRoot: true
            runAsUser: 65532
            runAsGroup: 65532
            seccompProfile:
              type: RuntimeDefault
          containers:
            - name: dpf
              image: {image}
              args: ["run", {product_json}, "--log-format", "json"]
              env:
                - name: DPF_TARGET
                  value: {target}
                - name: DPF_DATA_DIR
                  value: /tmp/dpf
              securityContext:
                allowPrivilegeEscalation: false
                readOnlyRootFilesystem: true
                capabilities:
                  drop: ["ALL"]
              volumeMounts:
                - name: data
                  mountPath: /tmp/dpf
              resources:
                requests:
                  cpu: 250m
                  memory: 256Mi
                limits:
                  memory: 1Gi
          volumes:
            - name: data
              emptyDir: {{}}
"#,
            product_name = product.name,
            description = describe(&cron),
            indexed = match product.shards.filter(|&n| n > 1) {
                // One pod per shard; each finds its shard in JOB_COMPLETION_INDEX.
                Some(count) =>
                    format!("\n      completionMode: Indexed\n      completions: {count}\n      parallelism: {count}"),
                None => String::new(),
            },
            cron = yaml_string(&portable(&cron)),
            timezone = yaml_string(&product.timezone),
            retries = product.retries,
            codes = codes.join(", "),
            image = yaml_string(&settings.image),
            product_json = yaml_string(&product.name),
            target = yaml_string(settings.target),
        ));
    }
    out
}

/// A shell script of gcloud commands: a Cloud Run Job per product and the Cloud Scheduler job that
/// starts it on the product's schedule.
pub(crate) fn cloud_run(products: &[&Product], settings: &Settings) -> String {
    let mut out = format!(
        r#"#!/bin/sh
# dpf schedules on Google Cloud: a Cloud Run Job per product, started by a Cloud Scheduler job.
# Set PROJECT and SERVICE_ACCOUNT (it runs the jobs and lets Cloud Scheduler start them), then run this.
# Build and push the image first, e.g. `gcloud builds submit --tag "$IMAGE" .` with the repository's Dockerfile.
set -eu
PROJECT="${{PROJECT:?set PROJECT to the Google Cloud project}}"
SERVICE_ACCOUNT="${{SERVICE_ACCOUNT:?set SERVICE_ACCOUNT to the service account e-mail}}"
REGION="${{REGION:-{region}}}"
IMAGE="${{IMAGE:-{image}}}"
"#,
        region = settings.region,
        image = settings.image,
    );
    out.push_str(&unscheduled_note(products, "#"));
    for (product, cron) in scheduled(products) {
        let name = job_name(&product.name);
        out.push_str(&format!(
            r#"
# {product_name}: {description}
gcloud run jobs deploy {name} --project "$PROJECT" --region "$REGION" --image "$IMAGE" \
  --args=run,{product_name},--log-format,json --set-env-vars DPF_TARGET={target} \
  --max-retries 0 --task-timeout 3600s --service-account "$SERVICE_ACCOUNT"{tasks}
gcloud scheduler jobs create http {name} --project "$PROJECT" --location "$REGION" \
  --schedule {cron} --time-zone {timezone} --http-method POST \
  --uri "https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/{name}:run" \
  --oauth-service-account-email "$SERVICE_ACCOUNT" \
|| gcloud scheduler jobs update http {name} --project "$PROJECT" --location "$REGION" \
  --schedule {cron} --time-zone {timezone}
"#,
            product_name = product.name,
            description = describe(&cron),
            target = settings.target,
            // One task per shard; each finds its shard in CLOUD_RUN_TASK_INDEX and _COUNT.
            tasks = match product.shards.filter(|&n| n > 1) {
                Some(count) => format!(" \\\n  --tasks {count} --parallelism {count}"),
                None => String::new(),
            },
            cron = quote_shell(&portable(&cron)),
            timezone = quote_shell(&product.timezone),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{job_name, portable};

    #[test]
    fn schedules_are_written_as_every_scheduler_takes_them() {
        assert_eq!(portable("@daily"), "0 0 * * *");
        assert_eq!(portable("@weekly"), "0 0 * * 0");
        assert_eq!(portable("0 6 * * 7"), "0 6 * * 0");
        assert_eq!(portable("0 6 * * 1,7"), "0 6 * * 1,0");
        assert_eq!(portable("0 6 * * 5-7"), "0 6 * * 5-6,0");
        assert_eq!(portable("0 6 * * MON-FRI"), "0 6 * * MON-FRI");
        assert_eq!(portable("*/15 9-17 1 * *"), "*/15 9-17 1 * *");
        for cron in ["@daily", "0 6 * * 7", "0 6 * * 5-7"] {
            let (a, b) = (
                crate::plan::schedule::parse(cron).unwrap(),
                crate::plan::schedule::parse(&portable(cron)).unwrap(),
            );
            let start = chrono::Utc::now();
            let tz = chrono_tz::UTC;
            assert_eq!(
                crate::plan::schedule::next_runs(&a, tz, start, 20),
                crate::plan::schedule::next_runs(&b, tz, start, 20),
                "{cron}"
            );
        }
    }

    #[test]
    fn job_names_are_dns_labels() {
        assert_eq!(job_name("weather_data_product"), "dpf-weather-data-product");
        let long = job_name(&"a_".repeat(60));
        assert!(long.len() <= 52 && !long.ends_with('-'), "{long}");
    }
}
