//! The running `extract_http`: builds each request, follows pagination, retries transient failures
//! per request (pages already fetched are kept), and decodes every page into one table.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;

use futures::stream::{FuturesOrdered, StreamExt as _};
use serde_json::Value;
use url::Url;

use super::decode::{self, Page, Shape};
use super::http::{ExtractHttp, Format, Pagination};
use super::paging::{Next, at_counter, counted, counted_next, counter_after, following, with_query};
pub(crate) use super::request::{Context, Shared};
use super::request::{Requests, parse_url, send};
use crate::error::TaskError;
use crate::http::Response;
use crate::table::spill::{CHUNK_ROWS, SpillWriter, finish_apart, write_apart};
use crate::table::{RowsBuilder, Table};

/// What an extract yields.
pub(crate) struct Extracted {
    pub table: Table,
    pub pages: usize,
}

/// `params.query` as pairs; an array repeats its key.
fn query_pairs(params: &ExtractHttp) -> Vec<(String, String)> {
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    params
        .query
        .iter()
        .flat_map(|(name, value)| match value {
            Value::Array(items) => items.iter().map(|v| (name.clone(), text(v))).collect(),
            Value::Null => Vec::new(),
            other => vec![(name.clone(), text(other))],
        })
        .collect()
}

/// Requests kept in flight ahead of decoding when the next pages' URLs are known before the page in
/// hand is decoded: page numbers, and offsets that step by a page size.
const PREFETCH: usize = 4;

/// The largest body of an unpaginated request decoded where it arrived, not on a blocking thread: a
/// 64 KiB page decodes in a fraction of a millisecond, and starting a thread for it can take as long.
const INLINE_BYTES: usize = 64 << 10;

/// A page's response, as its request ended.
struct Sent {
    url: Url,
    /// The page number or offset it asked for, under page-number and offset pagination.
    counter: i64,
    result: Result<Response, TaskError>,
    attempts: u32,
}

/// The requests sent and not yet decoded, oldest first.
type InFlight<'a> = FuturesOrdered<Pin<Box<dyn Future<Output = Sent> + 'a>>>;

/// Fetches every page; `constants` are fields set on every row (a fan-out's `include_item`).
/// `attempts` ends as the attempts of the request that needed the most, also when the extract fails.
/// Each page is decoded on a blocking thread while the next requests are under way.
pub(crate) async fn fetch(
    params: &ExtractHttp,
    constants: Vec<(String, crate::table::Cell<'static>)>,
    cx: &Context<'_>,
    attempts: &mut u32,
) -> Result<Extracted, TaskError> {
    let requests = Requests::new(params, cx)?;
    let base = parse_url(&params.url)?;
    let mut query = query_pairs(params);
    let pagination = params.pagination.as_ref();
    let paginated = pagination.is_some();
    let shape = Arc::new(Shape {
        format: params.format,
        records: params.records.clone(),
        include: params.include.clone(),
        constants,
        follow: pagination
            .and_then(Pagination::lookup)
            .filter(|_| matches!(params.format, Format::Json))
            .map(str::to_owned),
    });
    // Page-number and offset pagination count from `start`.
    let mut counter = 0;
    if let Some(p) = pagination {
        if let Some((param, start)) = counted(p) {
            counter = start;
            query.push((param.to_owned(), counter.to_string()));
        }
        if let (Some(name), Some(size)) = (p.page_size_param(), p.page_size()) {
            query.push((name.to_owned(), size.to_string()));
        }
    }
    let url = with_query(&base, &query);
    let mut builder = RowsBuilder::stopping_on(cx.cancel.clone());
    // The chunks already on disk, and the page the rows in the builder start at.
    let mut spill: Option<SpillWriter> = None;
    let mut chunk_from = 1;
    let progress = cx.shared;
    // The bytes of the pages decoded into the builder: chunks end at the same pages every run, so
    // a rerun writes the same chunks (and finds its BigQuery load by their digest).
    let mut chunk_bytes = 0;
    *attempts = 1;
    let max_pages = pagination.map_or(1, |p| p.max_pages().max(1));
    // The step between prefetched pages; a recording holds exactly the pages the run used.
    let step = match pagination {
        _ if cx.record_dir.is_some() => None,
        Some(Pagination::PageNumber { .. }) => Some(1),
        Some(p @ Pagination::Offset { .. }) => p.page_size().and_then(|size| i64::try_from(size).ok()),
        _ => None,
    };
    let send_page = |url: Url, page: usize, counter: i64| -> Pin<Box<dyn Future<Output = Sent> + '_>> {
        let requests = &requests;
        Box::pin(async move {
            let (result, attempts) = send(cx, &requests.request(url.clone()), page).await;
            Sent {
                url,
                counter,
                result,
                attempts,
            }
        })
    };
    // Each URL requested, with its page number.
    let mut fetched: HashMap<String, usize> = HashMap::from([(url.to_string(), 1)]);
    let mut in_flight: InFlight<'_> = FuturesOrdered::new();
    // Responses that arrived while an earlier page was decoded, and the URLs of all requests not yet
    // decoded, in page order.
    let mut ready: VecDeque<Sent> = VecDeque::new();
    let mut queued: VecDeque<Url> = VecDeque::from([url.clone()]);
    in_flight.push_back(send_page(url, 1, counter));
    let mut last = (1usize, counter);
    let mut pages = 0usize;
    loop {
        pages += 1;
        if let Some(step) = step {
            while queued.len() < PREFETCH && (last.0 as u64) < max_pages {
                last = (last.0 + 1, last.1 + step);
                let url = at_counter(pagination, last.1, &mut query, &base);
                fetched.insert(url.to_string(), last.0);
                queued.push_back(url.clone());
                in_flight.push_back(send_page(url, last.0, last.1));
            }
        }
        let sent = match ready.pop_front() {
            Some(sent) => sent,
            None => in_flight
                .next()
                .await
                .ok_or_else(|| TaskError::permanent(format!("page {pages} was never requested")))?,
        };
        queued.pop_front();
        *attempts = (*attempts).max(sent.attempts);
        let mut response = sent.result.map_err(|error| on_page(error, pages, paginated))?;
        let body = Arc::new(std::mem::take(&mut response.body));
        chunk_bytes += body.len();
        builder.start_page(pages);
        let decoding = if pagination.is_none() && body.len() <= INLINE_BYTES {
            let page = decode::decode(body.as_slice(), &shape, &mut builder);
            Decoding::Done(Box::new((builder, page)))
        } else {
            Decoding::Apart(decode_apart(builder, Arc::clone(&body), &shape))
        };
        // What follows, when the response tells it before its rows are decoded (a Link header, or
        // the next page's URL or cursor among the body's last fields): request it now. The decoded
        // page says for sure.
        let early = match pagination {
            Some(p) if counted(p).is_none() => {
                let hint = (shape.follow.as_deref()).and_then(|path| decode::lookup_near_end(&body, path));
                following(p, hint, &response, &sent.url, &mut query, &base).ok()
            }
            _ => None,
        };
        drop(body);
        if let Some(Next::Url(next)) = &early
            && (pages as u64) < max_pages
            && !fetched.contains_key(next.as_str())
        {
            fetched.insert(next.to_string(), pages + 1);
            queued.push_back(next.clone());
            in_flight.push_back(send_page(next.clone(), pages + 1, 0));
            last = (pages + 1, 0);
        }
        let (returned, decoded) = finish_decoding(decoding, &mut in_flight, &mut ready).await?;
        builder = returned;
        // Too many rows to hold: this chunk goes to disk, and the builder starts afresh.
        let chunk_full = builder.rows() >= CHUNK_ROWS || chunk_bytes >= cx.chunk_bytes;
        if decoded.is_ok() && builder.rows() > 0 && chunk_full {
            let writer = match spill.take() {
                Some(writer) => writer,
                None => SpillWriter::new(cx.spill_dir, cx.task).map_err(TaskError::caused)?,
            };
            spill = Some(write_apart(writer, builder.finish(), chunk_from).await?);
            builder = RowsBuilder::stopping_on(cx.cancel.clone());
            chunk_from = pages + 1;
            chunk_bytes = 0;
        }
        let mut page = decoded.map_err(|error| match error {
            decode::DecodeError::Stopped => TaskError::interrupted(),
            error => on_page(TaskError::permanent(error), pages, paginated),
        })?;
        progress.rows.set(progress.rows.get() + page.records);
        progress.pages.set(progress.pages.get() + 1);
        progress.update();
        let next = match pagination {
            None => Next::Done,
            // An empty page ends every kind of pagination.
            _ if page.records == 0 => Next::Done,
            Some(p) if counted(p).is_some() => counted_next(p, &page, sent.counter, &mut query, &base),
            Some(p) => following(p, page.follow.take(), &response, &sent.url, &mut query, &base)?,
        };
        let Next::Url(next) = next else { break };
        if pages as u64 >= max_pages {
            return Err(TaskError::permanent(format!(
                "pagination did not end after {max_pages} pages (pagination.max_pages); raise it if the API \
                 really has more, or check that the API ends its pages as `type: {}` expects",
                pagination.map_or("", Pagination::as_str)
            )));
        }
        if queued.front() != Some(&next) {
            // What was requested ahead is not the next page (offsets that stepped by other than the
            // page size): those requests are dropped.
            for url in queued.drain(..) {
                fetched.remove(url.as_str());
            }
            in_flight = FuturesOrdered::new();
            ready.clear();
            // An API that hands back a page it already gave would loop until max_pages.
            if let Some(page) = fetched.get(next.as_str()) {
                return Err(TaskError::permanent(format!(
                    "page {pages} points back to page {page} ({}): the API's pagination loops",
                    cx.secrets.redact(next.as_str())
                )));
            }
            let counter = pagination.map_or(0, |p| counter_after(p, sent.counter, page.records));
            fetched.insert(next.to_string(), pages + 1);
            queued.push_back(next.clone());
            in_flight.push_back(send_page(next, pages + 1, counter));
            last = (pages + 1, counter);
        }
    }
    drop(in_flight);
    let table = match spill {
        None => Table::from_batch(builder.finish()),
        Some(writer) => {
            let writer = write_apart(writer, builder.finish(), chunk_from).await?;
            let spill = finish_apart(writer).await?;
            Table::spilled(spill)
        }
    };
    Ok(Extracted { table, pages })
}

/// A page's outcome, with the builder it was decoded into.
type Decoded = (RowsBuilder, Result<Page, decode::DecodeError>);

/// A page decoded, or being decoded on a blocking thread.
enum Decoding {
    Done(Box<Decoded>),
    Apart(tokio::task::JoinHandle<Decoded>),
}

/// Starts decoding `body` into `builder` on a blocking thread.
fn decode_apart(mut builder: RowsBuilder, body: Arc<Vec<u8>>, shape: &Arc<Shape>) -> tokio::task::JoinHandle<Decoded> {
    /// A body shared with the pagination lookup, dropped by each as soon as it is done with it.
    struct Body(Arc<Vec<u8>>);
    impl AsRef<[u8]> for Body {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    let shape = Arc::clone(shape);
    tokio::task::spawn_blocking(move || {
        let page = decode::decode(Body(body), &shape, &mut builder);
        (builder, page)
    })
}

/// Waits for `decoding` while the requests in flight go on; their responses wait in `ready`.
async fn finish_decoding(
    decoding: Decoding,
    in_flight: &mut InFlight<'_>,
    ready: &mut VecDeque<Sent>,
) -> Result<Decoded, TaskError> {
    let mut decoding = match decoding {
        Decoding::Done(done) => return Ok(*done),
        Decoding::Apart(decoding) => decoding,
    };
    loop {
        tokio::select! {
            joined = &mut decoding => return joined.map_err(TaskError::caused),
            Some(sent) = in_flight.next(), if !in_flight.is_empty() => ready.push_back(sent),
        }
    }
}

fn on_page(error: TaskError, page: usize, paginated: bool) -> TaskError {
    if paginated {
        error.context(format!("page {page}"))
    } else {
        error
    }
}
