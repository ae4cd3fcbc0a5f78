//! Any method and path: one route, never a panic; only GET reads and only POST mutates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netmoded::http::routes::{Route, route};

fuzz_target!(|data: (&[u8], &str)| {
    let (method, path) = data;
    let Ok(m) = hyper::Method::from_bytes(method) else {
        return;
    };
    match route(&m, path) {
        Route::PostProbe | Route::PostApply => assert_eq!(m, hyper::Method::POST),
        Route::NotAllowed(_) | Route::NotFound => {}
        _ => assert_eq!(m, hyper::Method::GET),
    }
});
