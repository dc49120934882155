//! Every cell of the NAT matrix (81 behaviours on each side, and one NAT with hairpinning on and off)
//! simulated, and its outcome compared with `host_sim::theory`'s prediction.

use host_sim::matrix::{self, Cell};
use host_sim::theory::Prediction;

#[test]
fn every_cell_matches_the_prediction() {
    let cells = matrix::cells();
    assert_eq!(cells.len(), 81 * 81 + 2 * 81);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results = matrix::run_cells(&cells, 1, threads);
    println!("{}", matrix::summary(&results));
    let wrong: Vec<String> = results
        .iter()
        .filter(|r| !r.matches_prediction())
        .map(|r| {
            format!(
                "{}: predicted {}, {}",
                r.cell.label(),
                r.prediction,
                matrix::describe(r)
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} cells differ from theory:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Each class is populated, and the timing-dependent class nearly always connects (the shared
    // retry schedule's one-sided slots give the listener its chances; 2880 of 2880 with seed 1).
    let count = |p: Prediction| {
        results
            .iter()
            .filter(|r| matches!(r.cell, Cell::Two(..)) && r.prediction == p)
            .count()
    };
    assert!(count(Prediction::Direct) > 0 && count(Prediction::Fail) > 0);
    let listener: Vec<_> = results
        .iter()
        .filter(|r| r.prediction == Prediction::Listener)
        .collect();
    let connected = listener.iter().filter(|r| r.connected).count();
    assert!(
        connected * 100 >= listener.len() * 99,
        "only {connected} of {} listener cells connected",
        listener.len()
    );
}
