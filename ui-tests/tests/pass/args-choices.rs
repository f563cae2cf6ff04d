//! What `inspect(calls, args ...)` shows: every argument (and `self` only
//! when it is `Debug`), the ones named, all but some, or none.

/// Not `Debug`: a bare `args` leaves `self` out rather than fail.
struct Plain;

#[derive(Debug)]
struct Keyed {
    key: u32,
}

struct Opaque;

impl Plain {
    #[manhole::inspect(calls, args)]
    async fn bare(&self, limit: u32) -> u32 {
        limit
    }
}

impl Keyed {
    #[manhole::inspect(calls, args(self, limit))]
    async fn named(&self, _store: &Opaque, limit: u32) -> u32 {
        self.key + limit
    }

    #[manhole::inspect(calls, args(skip(store)))]
    async fn skipping(&self, store: &Opaque, limit: u32) -> u32 {
        let _ = store;
        self.key + limit
    }

    #[manhole::inspect(calls, args(skip_all))]
    async fn none(&self, _store: &Opaque) -> u32 {
        self.key
    }
}

fn main() {
    // Built, not run: the futures are never polled.
    let keyed = Keyed { key: 1 };
    drop(Plain.bare(1));
    drop(keyed.named(&Opaque, 2));
    drop(keyed.skipping(&Opaque, 3));
    drop(keyed.none(&Opaque));
}
