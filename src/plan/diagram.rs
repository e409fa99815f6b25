//! The plan's task graph as a picture: Mermaid (which GitHub renders in Markdown) and Graphviz DOT.
//! Tasks are boxes labelled with their function; what an extract reads and where a store or alert
//! writes are cylinders; an arrow is data read, a dashed arrow an order without data.

use super::Plan;

/// One node of the picture: its id, its label, and whether it is a task (else a source or
/// destination).
struct Node {
    id: String,
    label: String,
    task: bool,
}

/// Nodes and edges (from, to, whether data flows) of `plan`.
fn graph(plan: &Plan) -> (Vec<Node>, Vec<(String, String, bool)>) {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let id = format!("t{i}");
        nodes.push(Node {
            id: id.clone(),
            label: format!("{}\n{}", step.id, step.function.name()),
            task: true,
        });
        if let Some(source) = &step.source {
            nodes.push(Node {
                id: format!("s{i}"),
                label: source.clone(),
                task: false,
            });
            edges.push((format!("s{i}"), id.clone(), true));
        }
        if let Some(destination) = &step.destination {
            nodes.push(Node {
                id: format!("d{i}"),
                label: destination.clone(),
                task: false,
            });
            edges.push((id.clone(), format!("d{i}"), true));
        }
        let index = |up: &String| plan.steps.iter().position(|s| &s.id == up);
        for up in step.reads.iter().filter_map(index) {
            edges.push((format!("t{up}"), id.clone(), true));
        }
        for up in step.after.iter().filter_map(index) {
            edges.push((format!("t{up}"), id.clone(), false));
        }
    }
    (nodes, edges)
}

/// A Mermaid flowchart of `plan`.
pub fn mermaid(plan: &Plan) -> String {
    let (nodes, edges) = graph(plan);
    // Mermaid takes entity codes inside quoted labels; `<br/>` breaks a line.
    let label = |text: &str| {
        text.replace('&', "#amp;")
            .replace('"', "#quot;")
            .replace('<', "#lt;")
            .replace('>', "#gt;")
            .replace('\n', "<br/>")
    };
    let mut out = format!("---\ntitle: {}\n---\nflowchart LR\n", label(&plan.product));
    for node in &nodes {
        let (open, close) = if node.task { ("[", "]") } else { ("[(", ")]") };
        out.push_str(&format!("  {}{open}\"{}\"{close}\n", node.id, label(&node.label)));
    }
    for (from, to, data) in &edges {
        out.push_str(&format!("  {from} {} {to}\n", if *data { "-->" } else { "-.->" }));
    }
    out
}

/// A Graphviz DOT digraph of `plan`.
pub fn dot(plan: &Plan) -> String {
    let (nodes, edges) = graph(plan);
    let quoted = |text: &str| {
        format!(
            "\"{}\"",
            text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
        )
    };
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
        quoted(&plan.product)
    );
    for node in &nodes {
        let shape = if node.task { "" } else { ", shape=cylinder" };
        out.push_str(&format!("  {} [label={}{shape}];\n", node.id, quoted(&node.label)));
    }
    for (from, to, data) in &edges {
        let style = if *data { "" } else { " [style=dashed]" };
        out.push_str(&format!("  {from} -> {to}{style};\n"));
    }
    out.push_str("}\n");
    out
}
