"""Reads a dpf warehouse the way its users do, with DuckDB, polars and pyarrow, and prints what
each of them saw as one JSON object.

usage: parquet_readers.py WAREHOUSE [TABLE FOLDER_COLUMN COLUMN]

- `<reader>_rows`: the rows a glob over the whole warehouse (`WAREHOUSE/**/*.parquet`) reads;
- with TABLE (a table folder partitioned by COLUMN into `FOLDER_COLUMN=<date>/` folders):
  `<reader>_partitions`, the rows per partition value as the reader types it ("null" for the null
  partition), and `<reader>_mismatched`, the rows whose partition is not the UTC date of COLUMN.
"""

import json
import sys

import duckdb
import polars as pl
import pyarrow.dataset as ds


def main(warehouse, table=None, folder=None, column=None):
    glob = f"{warehouse}/**/*.parquet"
    seen = {
        "duckdb_rows": duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0],
        "polars_rows": pl.scan_parquet(glob).select(pl.len()).collect().item(),
    }
    if table is None:
        return seen

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(
        f"""SELECT CAST("{folder}" AS VARCHAR), typeof("{folder}"), count(*),
                   count(*) FILTER (WHERE "{folder}" IS DISTINCT FROM CAST("{column}" AS DATE))
            FROM read_parquet('{table}/**/*.parquet', hive_partitioning = true) GROUP BY ALL"""
    ).fetchall()
    seen["duckdb_partitions"] = {key(value): n for value, _, n, _ in rows}
    seen["duckdb_types"] = sorted({kind for _, kind, _, _ in rows})
    seen["duckdb_mismatched"] = sum(m for *_, m in rows)

    frame = pl.scan_parquet(f"{table}/**/*.parquet", hive_partitioning=True)
    instant = pl.col(column)
    if frame.collect_schema()[column] == pl.Datetime and frame.collect_schema()[column].time_zone:
        instant = instant.dt.convert_time_zone("UTC")
    grouped = (
        frame.group_by(folder)
        .agg(pl.len().alias("n"), pl.col(folder).ne_missing(instant.dt.date()).sum().alias("m"))
        .collect()
    )
    seen["polars_partitions"] = {key(row[folder]): row["n"] for row in grouped.iter_rows(named=True)}
    seen["polars_types"] = [str(frame.collect_schema()[folder])]
    seen["polars_mismatched"] = int(grouped["m"].sum())

    arrow = ds.dataset(table, format="parquet", partitioning="hive").to_table()
    counts = arrow.group_by(folder).aggregate([([], "count_all")]).to_pylist()
    seen["pyarrow_partitions"] = {key(row[folder]): row["count_all"] for row in counts}
    return seen


def key(value):
    return "null" if value is None else str(value)


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:]), sort_keys=True))
