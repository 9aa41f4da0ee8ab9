use switchboard_core::event::ConnectionInfo;
use switchboard_core::id::IdGenerator;
use tokio::sync::mpsc;

use super::*;

type Conn = (Arc<ConnHandle>, mpsc::Receiver<Outbound>);

fn handle(queue: usize, bytes: usize) -> Conn {
    handle_from(&IdGenerator::new("t"), queue, bytes)
}

fn handle_from(ids: &IdGenerator, queue: usize, bytes: usize) -> Conn {
    let info = Arc::new(ConnectionInfo {
        id: ids.connection_id(),
        connected_at_ms: 0,
        source_ip: [127, 0, 0, 1].into(),
        user_agent: None,
        path: "/".into(),
        headers: vec![],
        query: vec![],
        subprotocol: None,
        tls: false,
        port: 0,
        authorizer: None,
    });
    ConnHandle::new(info, queue, bytes, 100)
}

#[test]
fn a_full_queue_closes_with_1013_instead_of_growing() {
    let (h, mut rx) = handle(2, 1000);
    h.send(Bytes::from_static(b"a"), false).unwrap();
    h.send(Bytes::from_static(b"b"), false).unwrap();
    assert_eq!(
        h.send(Bytes::from_static(b"c"), false),
        Err(SendError::QueueFull)
    );
    assert_eq!(h.close_requested(), Some(CloseRequest::SlowConsumer));
    assert_eq!(
        h.send(Bytes::from_static(b"d"), false),
        Err(SendError::Gone)
    );
    assert_eq!(rx.try_recv().unwrap().data, "a");
}

#[test]
fn the_byte_bound_counts_too() {
    let (h, mut rx) = handle(100, 150);
    let big = Bytes::from(vec![0u8; 80]);
    h.send(big.clone(), true).unwrap();
    assert_eq!(h.send(big.clone(), true), Err(SendError::QueueFull));
    let (h, _rx2) = handle(100, 1000);
    assert_eq!(
        h.send(Bytes::from(vec![0u8; 101]), true),
        Err(SendError::TooLarge)
    );
    // Dequeuing gives the budget back.
    let m = rx.try_recv().unwrap();
    assert_eq!(m.data.len(), 80);
}

#[test]
fn the_table_counts_and_finds() {
    let t = ConnectionTable::default();
    let (a, _ra) = handle(1, 10);
    let (b, _rb) = handle(1, 10);
    t.insert(a.clone());
    t.insert(b.clone());
    assert_eq!(t.len(), 2);
    assert!(t.get(&a.info.id).is_some());
    t.remove(&a.info.id);
    t.remove(&a.info.id);
    assert_eq!(t.len(), 1);
    t.close_all(CloseRequest::Shutdown);
    assert_eq!(b.close_requested(), Some(CloseRequest::Shutdown));
}

/// `n` connections of one table, all in group `g`.
fn group_of(n: usize) -> (ConnectionTable, Vec<Conn>) {
    let t = ConnectionTable::default();
    let ids = IdGenerator::new("t");
    let conns: Vec<_> = (0..n).map(|_| handle_from(&ids, 4, 1000)).collect();
    for (h, _) in &conns {
        t.insert(h.clone());
        assert_eq!(t.join(h.info.id, "g"), Ok(true));
    }
    (t, conns)
}

fn ids_of(handles: &[Arc<ConnHandle>]) -> Vec<ConnectionId> {
    handles.iter().map(|h| h.info.id).collect()
}

#[test]
fn a_member_removed_on_close_is_never_returned() {
    let (t, conns) = group_of(3);
    let [a, b, c] = [0, 1, 2].map(|i| conns[i].0.clone());
    t.set_user(b.info.id, Some("ada")).unwrap();
    t.set_user(c.info.id, Some("ada")).unwrap();
    t.remove(&b.info.id);
    assert_eq!(ids_of(&t.group_handles("g", &[])), [a.info.id, c.info.id]);
    assert_eq!(ids_of(&t.user_handles("ada")), [c.info.id]);
    assert!(!ids_of(&t.all_handles()).contains(&b.info.id));
    assert_eq!(t.group_len("g"), 2);
    // A join or user change that lost the race with the close is refused.
    assert_eq!(t.join(b.info.id, "g"), Err(MembershipError::NotHeld));
    assert_eq!(
        t.set_user(b.info.id, Some("ada")),
        Err(MembershipError::NotHeld)
    );
    assert_eq!(ids_of(&t.group_handles("g", &[])), [a.info.id, c.info.id]);
    assert!(t.groups_of(b.info.id).is_empty());
    // Closing everyone ends the group.
    t.remove(&a.info.id);
    t.remove(&c.info.id);
    assert!(t.group_handles("g", &[]).is_empty());
    assert!(t.user_handles("ada").is_empty());
    assert_eq!(t.group_page("g", None, 10), []);
}

#[test]
fn group_sends_reach_the_current_handle() {
    let (t, mut conns) = group_of(2);
    let f = ConnectionTable::fanout(&t.group_handles("g", &[]), &Bytes::from_static(b"1"), false);
    assert_eq!((f.recipients, f.delivered), (2, 2));
    assert_eq!(conns[1].1.try_recv().unwrap().data, "1");
    // The same connection under a new handle (a session come back): sends go there.
    let (h, mut rx) = ConnHandle::new(conns[1].0.info.clone(), 4, 1000, 100);
    t.insert(h.clone());
    assert_eq!(t.len(), 2);
    let hs = t.group_handles("g", &[]);
    assert!(Arc::ptr_eq(&hs[1], &h));
    ConnectionTable::fanout(&hs, &Bytes::from_static(b"2"), false);
    assert_eq!(rx.try_recv().unwrap().data, "2");
    assert!(conns[1].1.try_recv().is_err());
}

#[test]
fn join_leave_and_close_interleaved() {
    let (t, conns) = group_of(4);
    let id = |i: usize| conns[i].0.info.id;
    assert!(t.leave(id(1), "g"));
    assert_eq!(ids_of(&t.group_handles("g", &[])), [id(0), id(2), id(3)]);
    assert_eq!(t.join(id(1), "g"), Ok(true));
    assert_eq!(t.join(id(1), "h"), Ok(true));
    assert_eq!(
        ids_of(&t.group_handles("g", &[])),
        [id(0), id(1), id(2), id(3)]
    );
    t.remove(&id(1));
    assert_eq!(ids_of(&t.group_handles("g", &[])), [id(0), id(2), id(3)]);
    assert!(t.group_handles("h", &[]).is_empty());
    assert!(!t.leave(id(1), "g"));
    assert_eq!(t.join(id(1), "h"), Err(MembershipError::NotHeld));
    // Paging stays in id order across the changes.
    assert_eq!(t.group_page("g", Some(id(0)), 1), [id(2)]);
    assert_eq!(t.group_page("g", Some(id(2)), 5), [id(3)]);
}

#[test]
fn the_exclude_list() {
    let (t, conns) = group_of(3);
    let id = |i: usize| conns[i].0.info.id;
    let outsider = handle(1, 10).0.info.id;
    assert_eq!(ids_of(&t.group_handles("g", &[id(1)])), [id(0), id(2)]);
    assert_eq!(
        ids_of(&t.group_handles("g", &[outsider])),
        [id(0), id(1), id(2)]
    );
    assert_eq!(
        ids_of(&t.group_handles("g", &[id(2), outsider, id(0)])),
        [id(1)]
    );
    assert!(t.group_handles("g", &[id(0), id(1), id(2)]).is_empty());
    assert!(t.group_handles("nobody", &[id(0)]).is_empty());
    // Excluding does not change the group.
    assert_eq!(ids_of(&t.group_handles("g", &[])), [id(0), id(1), id(2)]);
}

#[test]
fn a_fan_out_racing_closes_never_gets_a_closed_member() {
    // Closes in order, joins and leaves beside them, and fan-outs: a fan-out that
    // starts after close i finished never returns connection i or an earlier one.
    let (t, conns) = group_of(200);
    let handles: Vec<Arc<ConnHandle>> = conns.iter().map(|(h, _)| h.clone()).collect();
    let position: HashMap<ConnectionId, usize> = handles
        .iter()
        .enumerate()
        .map(|(i, h)| (h.info.id, i))
        .collect();
    let closed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for (i, h) in handles.iter().enumerate() {
                t.remove(&h.info.id);
                closed.store(i + 1, Ordering::Release);
            }
        });
        s.spawn(|| {
            for round in 0.. {
                let done = closed.load(Ordering::Acquire);
                if done == handles.len() {
                    break;
                }
                let h = &handles[(round * 7) % handles.len()];
                t.leave(h.info.id, "g");
                let joined = t.join(h.info.id, "g");
                if position[&h.info.id] < done {
                    assert_eq!(joined, Err(MembershipError::NotHeld));
                }
            }
        });
        loop {
            let done = closed.load(Ordering::Acquire);
            for h in t.group_handles("g", &[]).iter() {
                assert!(position[&h.info.id] >= done, "closed member returned");
            }
            if done == handles.len() {
                break;
            }
        }
    });
    assert!(t.group_handles("g", &[]).is_empty());
    assert_eq!(t.group_len("g"), 0);
}

/// ns per member of a group send to 15,000: recipients collected through the index's
/// handles vs looked up one by one in the sharded table (the way it was done before
/// the index held handles), then queued. Run with
/// `cargo test --release -p switchboard-edge --lib fanout_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: prints figures"]
fn fanout_cost() {
    const N: usize = 15_000;
    const ROUNDS: u32 = 200;
    let t = ConnectionTable::default();
    let ids = IdGenerator::new("bench");
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        let (h, rx) = handle_from(&ids, 4, 1 << 20);
        t.insert(h.clone());
        t.join(h.info.id, "g").unwrap();
        conns.push((h, rx));
    }
    let data = Bytes::from(vec![b'x'; 64]);
    let per_member = |ns: u128| ns as f64 / f64::from(ROUNDS) / N as f64;
    let by_lookup = |exclude: &[ConnectionId]| -> Vec<Arc<ConnHandle>> {
        t.group_page("g", None, usize::MAX)
            .iter()
            .filter(|id| !exclude.contains(id))
            .filter_map(|id| t.get(id))
            .collect()
    };
    let first = conns[0].0.info.id;
    for (name, exclude) in [("no exclude", vec![]), ("exclude 1", vec![first])] {
        // [index, lookup per member]
        let mut collect = [0u128; 2];
        let mut send = [0u128; 2];
        for _ in 0..ROUNDS {
            for (k, total) in collect.iter_mut().enumerate() {
                let start = tokio::time::Instant::now();
                let n = match k {
                    0 => t.group_handles("g", &exclude).len(),
                    _ => by_lookup(&exclude).len(),
                };
                *total += start.elapsed().as_nanos();
                assert_eq!(n, N - exclude.len());
            }
            for (k, total) in send.iter_mut().enumerate() {
                let start = tokio::time::Instant::now();
                let f = match k {
                    0 => ConnectionTable::fanout(&t.group_handles("g", &exclude), &data, false),
                    _ => ConnectionTable::fanout(&by_lookup(&exclude), &data, false),
                };
                *total += start.elapsed().as_nanos();
                assert_eq!(f.dropped, 0);
                for (h, rx) in &mut conns {
                    while let Ok(o) = rx.try_recv() {
                        h.dequeued(o.data.len());
                    }
                }
            }
        }
        println!(
            "fanout_cost {name}: {N} members, {ROUNDS} rounds: collect {:.1} ns/member \
             (group_handles) vs {:.1} (lookup per member); collect+queue {:.1} vs {:.1}",
            per_member(collect[0]),
            per_member(collect[1]),
            per_member(send[0]),
            per_member(send[1]),
        );
    }
}

/// A user's count, rank and oldest, read from the index in place: the same as sorting
/// every connection of the user, whatever order they were opened and closed in.
#[test]
fn a_users_connections_are_counted_ranked_and_the_oldest_listed() {
    let table = ConnectionTable::new(4, 4096);
    let ids = IdGenerator::new("t");
    let mut open = Vec::new();
    for i in 0..40u64 {
        let (h, rx) = handle_from(&ids, 4, 4096);
        let mut info = (*h.info).clone();
        // Ages out of id order, with ties.
        info.connected_at_ms = (i * 7919) % 13;
        let h = ConnHandle::new(Arc::new(info), 4, 4096, 100).0;
        drop(rx);
        table.insert(h.clone());
        table
            .set_user(h.info.id, Some(if i % 4 == 0 { "other" } else { "u" }))
            .unwrap();
        if i % 5 == 0 {
            h.request_close(CloseRequest::Deleted);
        }
        open.push(h);
    }
    let mut want: Vec<UserConnection> = open
        .iter()
        .filter(|h| table.user_of(h.info.id).as_deref() == Some("u"))
        .filter(|h| h.close_requested().is_none())
        .map(|h| UserConnection {
            connected_at_ms: h.info.connected_at_ms,
            id: h.info.id,
        })
        .collect();
    want.sort();
    let me = want[10];
    for oldest in [0, 1, 3, 64] {
        let (count, older, first) = table.user_connections("u", Some(me), oldest);
        assert_eq!(count, want.len() as u64);
        assert_eq!(older, 10);
        assert_eq!(first, want[..oldest.min(want.len())], "oldest {oldest}");
    }
    assert_eq!(table.user_connections("nobody", None, 5), (0, 0, vec![]));
}

/// Every change of a connection's user is seen by its task (which keeps the user's message
/// bucket until then), and only a change is.
#[test]
fn setting_a_user_is_counted_on_the_handle() {
    let table = ConnectionTable::new(4, 4096);
    let (h, _rx) = handle(4, 4096);
    table.insert(h.clone());
    let before = h.user_changes();
    table.set_user(h.info.id, Some("u")).unwrap();
    table.set_user(h.info.id, Some("v")).unwrap();
    table.set_user(h.info.id, None).unwrap();
    assert_eq!(h.user_changes(), before + 3);
    assert!(table.set_user(h.info.id, Some("")).is_err());
    let _ = table.join(h.info.id, "g");
    assert_eq!(h.user_changes(), before + 3);
}
