//! What route selection allocates for a message: the value it selects, not a copy of the
//! message's tree. Parsing the whole body into a `serde_json::Value` cost 16 to 40 times
//! the message's size (a 32-byte `Value` per array element, a `String` and a map node per
//! member), so one maximum-size message per worker thread held that much at once.
//!
//! Counting needs a global allocator, which is `unsafe` to implement; it lives in this
//! test binary alone, which has no other test, and counts only the calling thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use switchboard_core::route::{RouteTable, SelectionExpression};

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread local (no allocation to reach it), skipped during teardown.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + new_size));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

#[test]
fn selecting_a_route_allocates_the_key_not_the_message() {
    let table = RouteTable::new(
        SelectionExpression::parse("${request.body.service}/${request.body.action}").unwrap(),
        [("chat/send".to_owned(), 1), ("$default".to_owned(), 0)],
    );
    let n = 100_000;
    let mut bodies = Vec::new();
    // An array of a hundred thousand elements, an object of as many members, and both
    // nested deep, beside the fields the expression reads.
    bodies.push(format!(
        r#"{{"service":"chat","pad":[{}0],"action":"send"}}"#,
        "0,".repeat(n)
    ));
    let members: String = (0..n).map(|i| format!(r#""k{i}":{i},"#)).collect();
    bodies.push(format!(
        r#"{{"service":"chat","pad":{{{members}"z":0}},"action":"send"}}"#
    ));
    bodies.push(format!(
        r#"{{"pad":{}{},"service":"chat","action":"send"}}"#,
        "[".repeat(n),
        "]".repeat(n)
    ));
    for body in &bodies {
        let (selected, bytes) =
            allocated_by(|| table.select(body.as_bytes(), true).map(|s| *s.target));
        assert_eq!(selected, Some(1));
        // The key and its two parts, and for each of the two fields (a pass each)
        // serde_json's scratch for skipping a nesting of n levels: a byte a level, grown
        // by doubling. A `Value` tree was 32 bytes an element at the least.
        assert!(
            bytes <= 4096 + 2 * 4 * n,
            "{bytes} bytes allocated to route a {}-byte message",
            body.len()
        );
    }
}
