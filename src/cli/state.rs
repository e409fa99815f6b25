//! `dpf state show|reset PRODUCT`: a product's saved cursors and run history.

use serde_json::json;

use crate::state::StateStore;

use super::plan::{Format, find};
use super::runtime::Runtime;
use super::{Exit, ProductArgs, print};

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// The saved cursors and the recorded runs, the latest first.
    Show {
        #[command(flatten)]
        product: ProductArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Forget the saved cursors (of one task with --task): the next run starts from `initial`.
    Reset {
        #[command(flatten)]
        product: ProductArgs,
        /// Only this incremental extract's cursor.
        #[arg(long, value_name = "TASK")]
        task: Option<String>,
    },
}

pub(super) fn run(command: Command) -> anyhow::Result<Exit> {
    let runtime = Runtime::new(false)?;
    let (Command::Show { product: args, .. } | Command::Reset { product: args, .. }) = &command;
    let checked = find(&args.product, &args.products.products)?;
    let Some(product) = &checked.product else {
        anyhow::bail!(
            "{} is not valid: see `dpf validate {}`",
            args.product,
            checked.source.path().display()
        );
    };
    let data_dir = crate::target::data_dir(args.target.data_dir.as_deref());
    runtime.block_on(async {
        let store: StateStore = super::run::connected_state(product, args.target.target, &data_dir).await?;
        match &command {
            Command::Show { format, .. } => {
                let state = store.read(&product.name).await?;
                let runs = store.history(&product.name).await?;
                let text = match format {
                    Format::Json => {
                        let document = json!({
                            "product": product.name,
                            "store": store.location(),
                            "cursors": state.cursors,
                            "last_success": state.last_success,
                            "runs": runs,
                        });
                        serde_json::to_string_pretty(&document)? + "\n"
                    }
                    Format::Text => {
                        let mut text = format!("state of {} in {}\n", product.name, store.location());
                        if state.cursors.is_empty() {
                            text.push_str("cursors: none saved\n");
                        }
                        for (task, value) in &state.cursors {
                            let value = crate::extract::incremental::rendered(Some(value));
                            text.push_str(&format!("cursor {task}: {value}\n"));
                        }
                        let rows: Vec<[String; 5]> = runs
                            .iter()
                            .map(|run| {
                                let tasks: Vec<String> = run
                                    .tasks
                                    .iter()
                                    .filter_map(|t| Some(format!("{}={}", t.id, t.rows?)))
                                    .collect();
                                [
                                    run.started_at.clone(),
                                    run.logical_time.clone(),
                                    run.status.as_str().to_owned(),
                                    format!("{} ms", run.duration_ms),
                                    tasks.join(" "),
                                ]
                            })
                            .collect();
                        text.push_str(&format!("{} recorded run(s), the latest first:\n", runs.len()));
                        text.push_str(&super::aligned(
                            ["STARTED", "TICK", "STATUS", "DURATION", "ROWS"],
                            &rows,
                        ));
                        text
                    }
                };
                print(&text)?;
            }
            Command::Reset { task, .. } => {
                if let Some(task) = task
                    && !product.tasks.iter().any(|t| &t.id == task && t.incremental.is_some())
                {
                    anyhow::bail!("`{task}` is not an incremental extract of {}", product.name);
                }
                let forgotten = store.reset(&product.name, task.as_deref()).await?;
                let text = if forgotten.is_empty() {
                    "no saved cursor to forget\n".to_owned()
                } else {
                    format!(
                        "forgot the cursor of {}: the next run starts from `initial`\n",
                        forgotten.join(", ")
                    )
                };
                print(&text)?;
            }
        }
        Ok(Exit::Success)
    })
}
