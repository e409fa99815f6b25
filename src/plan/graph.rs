//! The task graph of a product: which task reads or waits for which. Shared by `validate` (which
//! reports its problems) and `plan` (which orders the steps).

use crate::spec::{Function, Role};

/// The facts about one task that decide its edges.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub id: String,
    /// `None` when the function is unknown (already reported elsewhere).
    pub function: Option<Function>,
    pub input: Vec<String>,
    pub depends_on: Vec<String>,
    /// The task whose rows a fan-out extract takes as its items (`for_each: { task: … }`).
    pub for_each: Option<String>,
    /// Tables a transform's SQL reads (they become inputs when they name tasks).
    pub sql_tables: Vec<String>,
    /// The warehouse tables (`dataset.table`) a transform with `engine: bigquery` reads: it waits
    /// for the tasks that write them, and takes no task's output as its input.
    pub warehouse_reads: Option<Vec<String>>,
    /// The warehouse table (`dataset.table`) a BigQuery store or a BigQuery transform writes.
    pub warehouse_writes: Option<String>,
}

/// `dataset.table` of a table name written `table`, `dataset.table` or `project.dataset.table`
/// (with or without backticks), in lower case: how tables of the warehouse are matched.
pub fn warehouse_table(name: &str) -> String {
    let name = name.replace('`', "").to_lowercase();
    let parts: Vec<&str> = name.split('.').collect();
    parts[parts.len().saturating_sub(2)..].join(".")
}

/// Why a task waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    /// Reads the other task's output (explicit `input`, a table in its SQL, or the default input).
    Input,
    /// Explicit `depends_on`.
    DependsOn,
    /// Alerts run after the stores above them.
    AfterStore,
}

/// Where a reference was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Input,
    DependsOn,
    ForEach,
}

impl Field {
    /// The task key it was written under.
    pub fn key(self) -> &'static str {
        match self {
            Field::Input => "input",
            Field::DependsOn => "depends_on",
            Field::ForEach => "for_each",
        }
    }
}

/// A problem in the graph, reported by `validate` with the span of the offending node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    DuplicateId {
        first: usize,
        again: usize,
    },
    UnknownTask {
        task: usize,
        field: Field,
        index: usize,
        name: String,
    },
    NotData {
        task: usize,
        field: Field,
        index: usize,
        upstream: usize,
    },
    NoInput {
        task: usize,
    },
    Cycle {
        tasks: Vec<usize>,
    },
}

/// The resolved graph: for every task, the tasks it waits for.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub upstream: Vec<Vec<(usize, Edge)>>,
}

impl Graph {
    /// Resolves every task's edges and collects the problems found on the way.
    pub fn build(nodes: &[Node]) -> (Graph, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut index_of = std::collections::HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if let Some(&first) = index_of.get(node.id.as_str()) {
                problems.push(Problem::DuplicateId { first, again: i });
            } else {
                index_of.insert(node.id.as_str(), i);
            }
        }
        let find = |name: &str| {
            index_of
                .get(name)
                .copied()
                .or_else(|| nodes.iter().position(|n| n.id.eq_ignore_ascii_case(name)))
        };

        let mut upstream = vec![Vec::new(); nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            let edges = &mut upstream[i];
            let for_each: &[String] = node.for_each.as_slice();
            for (field, names) in [
                (Field::Input, node.input.as_slice()),
                (Field::DependsOn, node.depends_on.as_slice()),
                (Field::ForEach, for_each),
            ] {
                for (index, name) in names.iter().enumerate() {
                    match find(name) {
                        None => problems.push(Problem::UnknownTask {
                            task: i,
                            field,
                            index,
                            name: name.clone(),
                        }),
                        Some(up) => {
                            let edge = if field == Field::DependsOn {
                                Edge::DependsOn
                            } else {
                                Edge::Input
                            };
                            let produces = nodes[up].function.is_none_or(Function::produces_data);
                            if edge == Edge::Input && !produces {
                                problems.push(Problem::NotData {
                                    task: i,
                                    field,
                                    index,
                                    upstream: up,
                                });
                            }
                            push(edges, up, edge);
                        }
                    }
                }
            }
            let role = node.function.map(Function::role);
            for table in node.warehouse_reads.iter().flatten() {
                let table = warehouse_table(table);
                for (up, other) in nodes.iter().enumerate() {
                    if up != i && other.warehouse_writes.as_deref().map(warehouse_table) == Some(table.clone()) {
                        push(edges, up, Edge::DependsOn);
                    }
                }
            }
            if role == Some(Role::Transform) && node.warehouse_reads.is_none() {
                for table in &node.sql_tables {
                    if let Some(up) = find(table).filter(|&up| up != i) {
                        push(edges, up, Edge::Input);
                    }
                }
            }
            let reads = matches!(role, Some(Role::Store | Role::Alert))
                || (role == Some(Role::Transform) && node.warehouse_reads.is_none());
            if reads && !edges.iter().any(|(_, edge)| *edge == Edge::Input) {
                let above = nodes[..i]
                    .iter()
                    // An unknown function is reported on its own; counting it as data avoids a cascade.
                    .rposition(|n| n.function.is_none_or(Function::produces_data));
                match above {
                    Some(up) => push(edges, up, Edge::Input),
                    // A transform may compute from constants alone.
                    None if role != Some(Role::Transform) => problems.push(Problem::NoInput { task: i }),
                    None => {}
                }
            }
            if role == Some(Role::Alert) {
                for (up, other) in nodes[..i].iter().enumerate() {
                    if other.function.map(Function::role) == Some(Role::Store) {
                        push(edges, up, Edge::AfterStore);
                    }
                }
            }
        }
        let graph = Graph { upstream };
        problems.extend(graph.cycles().into_iter().map(|tasks| Problem::Cycle { tasks }));
        (graph, problems)
    }

    /// Every cycle once, as the tasks along it (first task repeated at the end left out).
    fn cycles(&self) -> Vec<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        fn visit(graph: &Graph, task: usize, marks: &mut [Mark], stack: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            marks[task] = Mark::Open;
            stack.push(task);
            for &(up, _) in &graph.upstream[task] {
                match marks[up] {
                    Mark::New => visit(graph, up, marks, stack, out),
                    Mark::Open => {
                        let from = stack.iter().position(|&t| t == up).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].to_vec();
                        cycle.reverse();
                        out.push(cycle);
                    }
                    Mark::Done => {}
                }
            }
            stack.pop();
            marks[task] = Mark::Done;
        }
        let mut marks = vec![Mark::New; self.upstream.len()];
        let mut out = Vec::new();
        for task in 0..self.upstream.len() {
            if marks[task] == Mark::New {
                visit(self, task, &mut marks, &mut Vec::new(), &mut out);
            }
        }
        out
    }

    /// Tasks grouped into stages: every task of a stage can run once the earlier stages are done,
    /// concurrently with the others of its stage. `None` when the graph has a cycle.
    pub fn stages(&self) -> Option<Vec<Vec<usize>>> {
        let count = self.upstream.len();
        let mut level = vec![None; count];
        let mut stages: Vec<Vec<usize>> = Vec::new();
        let mut placed = 0;
        while placed < count {
            let ready: Vec<usize> = (0..count)
                .filter(|&t| level[t].is_none())
                .filter(|&t| {
                    self.upstream[t]
                        .iter()
                        .all(|&(up, _)| level[up].is_some_and(|l| l < stages.len()))
                })
                .collect();
            if ready.is_empty() {
                return None;
            }
            for &t in &ready {
                level[t] = Some(stages.len());
            }
            placed += ready.len();
            stages.push(ready);
        }
        Some(stages)
    }
}

fn push(edges: &mut Vec<(usize, Edge)>, up: usize, edge: Edge) {
    if !edges.iter().any(|&(u, e)| u == up && e == edge) {
        edges.push((up, edge));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, function: Function) -> Node {
        Node {
            id: id.into(),
            function: Some(function),
            ..Node::default()
        }
    }

    #[test]
    fn default_inputs_chain_in_file_order_and_stores_share_a_stage() {
        let nodes = [
            node("extract", Function::ExtractWeather),
            node("to_firestore", Function::StoreToFirestore),
            node("to_bigquery", Function::StoreToBigquery),
            node("alert", Function::SendAlerts),
        ];
        let (graph, problems) = Graph::build(&nodes);
        assert!(problems.is_empty());
        assert_eq!(graph.stages().unwrap(), vec![vec![0], vec![1, 2], vec![3]]);
        assert!(graph.upstream[3].contains(&(0, Edge::Input)));
        assert!(graph.upstream[3].contains(&(2, Edge::AfterStore)));
    }

    #[test]
    fn sql_tables_become_inputs() {
        let mut transform = node("daily", Function::TransformSql);
        transform.sql_tables = vec!["orders".into(), "Regions".into()];
        let nodes = [
            node("orders", Function::ExtractHttp),
            node("regions", Function::ExtractHttp),
            transform,
        ];
        let (graph, _) = Graph::build(&nodes);
        assert_eq!(graph.upstream[2], [(0, Edge::Input), (1, Edge::Input)]);
        assert_eq!(graph.stages().unwrap(), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn reports_unknown_tasks_missing_data_and_cycles() {
        let mut a = node("a", Function::TransformSql);
        a.input = vec!["b".into()];
        let mut b = node("b", Function::TransformSql);
        b.input = vec!["a".into(), "nope".into()];
        let store = node("store", Function::StoreToBigquery);
        let mut late = node("late", Function::StoreToFirestore);
        late.input = vec!["store".into()];
        let (graph, problems) = Graph::build(&[store, a, b, late]);
        assert!(problems.contains(&Problem::NoInput { task: 0 }));
        assert!(problems.contains(&Problem::UnknownTask {
            task: 2,
            field: Field::Input,
            index: 1,
            name: "nope".into()
        }));
        assert!(problems.contains(&Problem::NotData {
            task: 3,
            field: Field::Input,
            index: 0,
            upstream: 0
        }));
        assert!(
            problems
                .iter()
                .any(|p| matches!(p, Problem::Cycle { tasks } if tasks.len() == 2))
        );
        assert!(graph.stages().is_none());
    }
}
