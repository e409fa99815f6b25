//! `dpf list`

use serde_json::Value;

use crate::util::dpf;

#[test]
fn lists_products_with_owner_and_schedule() {
    let run = dpf().args(["list"]).expect(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{run}");
    assert!(
        lines[1].starts_with("sales_data_product    sales-analytics   0 2 * * *"),
        "{run}"
    );
    assert!(
        lines[2].starts_with("weather_cities        data-engineering  30 */6 * * *"),
        "{run}"
    );
    assert!(
        lines[3].starts_with("weather_data_product  data-engineering  0 */6 * * *"),
        "{run}"
    );

    let run = dpf().args(["list", "--format", "json"]).expect(0);
    let entries: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(entries[2]["name"], "weather_data_product");
    assert!(entries[2]["next_run"].as_str().unwrap().ends_with(":00:00Z"));
}

#[test]
fn invalid_products_are_listed_as_invalid() {
    let run = dpf()
        .args(["list", "--products", "tests/corpus/invalid/E200-duplicate-product"])
        .expect(0);
    assert!(run.stdout.contains("invalid: see `dpf validate`"), "{run}");
}

#[test]
fn a_folder_with_an_alias_bomb_lists_at_once() {
    let run = dpf().args(["list", "--products", "tests/corpus/invalid"]).expect(0);
    let bomb = run
        .stdout
        .lines()
        .find(|line| line.ends_with("E003-alias-bomb.yaml"))
        .unwrap_or_else(|| panic!("{run}"));
    assert!(bomb.contains("invalid: see `dpf validate`"), "{run}");
}
