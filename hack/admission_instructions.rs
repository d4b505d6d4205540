//! A fixed workload for counting, under callgrind, the instructions of the admission layer on one
//! request: parse the AdmissionReview, judge it, respond, serialise (what `POST /validate` does
//! between reading the body and writing the response, without the metrics and the log line).
//!
//! `cargo run --release --example admission-instructions -- [REVIEW.json] [ITERATIONS]`, or
//! `hack/bench-instructions.sh`, which counts `one_request` with callgrind. Defaults:
//! `examples/admission/review-denied.json` (an R10 denial) against the examples inventory.

use std::hint::black_box;

use pitrguard::admission::{Answer, Endpoint, decide, parse_review, respond, review_body};
use pitrguard::core::{Index, Policy};

// The allocator the binary runs on.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[inline(never)]
fn one_request(body: &[u8], index: &Index, policy: &Policy) -> Vec<u8> {
    let req = parse_review(body).expect("the review parses");
    let answer = Answer::for_endpoint(&decide(&req, index, policy), Endpoint::Validate);
    review_body(&respond(Endpoint::Validate, &req, &answer))
}

fn main() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args().skip(1);
    let review = args.next().map_or_else(|| repo.join("examples/admission/review-denied.json"), Into::into);
    let iterations: usize = args.next().map_or(1000, |n| n.parse().expect("ITERATIONS is a number"));
    let docs = pitrguard::load::read_documents(&[repo.join("examples")]).expect("examples/ loads");
    let index = pitrguard::load::build_index(&docs).expect("examples/ indexes");
    let body = std::fs::read(&review).unwrap_or_else(|e| panic!("{}: {e}", review.display()));
    let policy = Policy::default();
    let mut bytes = 0;
    for _ in 0..iterations {
        bytes += one_request(black_box(&body), &index, &policy).len();
    }
    println!("{iterations} responses, {bytes} bytes");
}
