//! `aws-scale`: the write units per second of the busiest DynamoDB partitions under a
//! simulated load of 10,000 executions/s (see `weconnect_tests::scale`).
//!
//! ```text
//! cargo run --release -p weconnect-tests --bin aws-scale
//! ```

use weconnect_tests::scale::{self, Load, PARTITION_WCU_LIMIT};

fn main() {
    let load = Load::default();
    let report = scale::run(&load);
    println!(
        "aws-scale: {} executions/s of a {}-node chain over {} organizations (one with {:.0}%, on one workflow),",
        load.executions_per_second,
        load.chain_nodes,
        load.organizations,
        load.hot_share * 100.0
    );
    println!(
        "plus a flow.map over {} items in {} s ({} children/s reporting to one parent node)",
        load.map_items,
        load.map_seconds,
        load.map_items / load.map_seconds.max(1)
    );
    println!("write units per second, the busiest partitions of the table and of each index:\n");
    println!("{:<11} {:>9}  {:<48} partition", "target", "WCU/s", "holds");
    for target in report.targets() {
        for p in report.top(&target, 5) {
            let over = if p.wcu_per_second > PARTITION_WCU_LIMIT {
                "  OVER"
            } else {
                ""
            };
            println!(
                "{:<11} {:>9.0}  {:<48} {}{over}",
                p.target, p.wcu_per_second, p.holds, p.partition
            );
        }
    }
    println!("\nthe busiest partition of each kind:\n");
    let mut seen = std::collections::BTreeSet::new();
    for p in &report.partitions {
        if seen.insert((p.target.clone(), p.holds.clone())) {
            println!(
                "{:<11} {:>9.0}  {:<48} {}",
                p.target, p.wcu_per_second, p.holds, p.partition
            );
        }
    }
    let over = report
        .partitions
        .iter()
        .filter(|p| p.wcu_per_second > PARTITION_WCU_LIMIT)
        .count();
    println!(
        "\npartitions written: {}, total {:.0} WCU/s; over {PARTITION_WCU_LIMIT:.0} WCU/s: {over}",
        report.partitions.len(),
        report.total_wcu_per_second
    );
    let max = report.max().map_or(0.0, |p| p.wcu_per_second);
    println!("max partition WCU/s: {max:.0}");
}
