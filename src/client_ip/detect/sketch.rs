//! A Space-Saving heavy-hitter sketch (Metwally, Agrawal, El Abbadi, 2005): at most `k`
//! counters whatever the traffic, and every key seen more than `n / k` times among `n` is
//! among them.

/// One monitored key: its count, and how much of that count may belong to keys it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counter<K> {
    pub(crate) key: K,
    pub(crate) count: u64,
    pub(crate) error: u64,
}

impl<K> Counter<K> {
    /// The times this key was certainly seen (a lower bound).
    pub(crate) fn guaranteed(&self) -> u64 {
        self.count - self.error
    }
}

/// At most `k` counters, allocated once.
#[derive(Debug)]
pub(crate) struct SpaceSaving<K> {
    counters: Vec<Counter<K>>,
    k: usize,
    total: u64,
}

impl<K: Copy + Eq> SpaceSaving<K> {
    /// A sketch of `k` counters (at least 1).
    pub(crate) fn new(k: usize) -> Self {
        let k = k.max(1);
        Self {
            counters: Vec::with_capacity(k),
            k,
            total: 0,
        }
    }

    /// Counts one occurrence of `key`: its counter if monitored, else a free counter, else the
    /// smallest counter is taken over (its count carried as the newcomer's error).
    pub(crate) fn add(&mut self, key: K) {
        self.total += 1;
        if let Some(counter) = self.counters.iter_mut().find(|counter| counter.key == key) {
            counter.count += 1;
            return;
        }
        if self.counters.len() < self.k {
            self.counters.push(Counter {
                key,
                count: 1,
                error: 0,
            });
            return;
        }
        // `k ≥ 1` and the vector is full, so there is a minimum.
        if let Some(smallest) = self.counters.iter_mut().min_by_key(|counter| counter.count) {
            *smallest = Counter {
                key,
                count: smallest.count + 1,
                error: smallest.count,
            };
        }
    }

    /// Occurrences counted since the last reset.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The monitored counters, in no particular order.
    #[cfg(test)]
    pub(crate) fn counters(&self) -> &[Counter<K>] {
        &self.counters
    }

    /// The `n` largest guaranteed counts, summed, and the key with the largest.
    pub(crate) fn top_guaranteed(&self, n: usize) -> (u64, Option<K>) {
        let mut best: [Option<&Counter<K>>; 8] = [None; 8];
        let n = n.clamp(1, best.len());
        for counter in &self.counters {
            // Insert into the sorted top-n list.
            let mut item = counter;
            for slot in best.iter_mut().take(n) {
                match slot {
                    Some(current) if current.guaranteed() >= item.guaranteed() => {}
                    Some(current) => std::mem::swap(current, &mut item),
                    None => {
                        *slot = Some(item);
                        break;
                    }
                }
            }
        }
        let sum = best.iter().flatten().map(|c| c.guaranteed()).sum();
        (sum, best[0].map(|counter| counter.key))
    }

    /// Forgets everything, keeping the allocation.
    pub(crate) fn reset(&mut self) {
        self.counters.clear();
        self.total = 0;
    }

    /// The number of counters the sketch can ever hold.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.counters.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_while_there_is_room() {
        let mut sketch = SpaceSaving::new(4);
        for key in [1, 2, 1, 3, 1, 2] {
            sketch.add(key);
        }
        assert_eq!(sketch.total(), 6);
        let mut counters = sketch.counters().to_vec();
        counters.sort_by_key(|counter| counter.key);
        let counts: Vec<_> = counters.iter().map(|c| (c.key, c.count, c.error)).collect();
        assert_eq!(counts, [(1, 3, 0), (2, 2, 0), (3, 1, 0)]);
        assert_eq!(sketch.top_guaranteed(2), (5, Some(1)));
        assert_eq!(sketch.top_guaranteed(8), (6, Some(1)));
    }

    #[test]
    fn a_full_sketch_replaces_the_smallest_counter() {
        let mut sketch = SpaceSaving::new(2);
        for key in [1, 1, 2, 3] {
            sketch.add(key);
        }
        // 3 took over 2's counter: count 2, of which 1 may be 2's.
        let three = sketch.counters().iter().find(|c| c.key == 3).unwrap();
        assert_eq!((three.count, three.error, three.guaranteed()), (2, 1, 1));
        assert!(sketch.counters().iter().all(|c| c.key != 2));
    }

    /// Issue 8, "the heavy-hitter sketch has bounded memory": a million distinct keys leave
    /// 32 counters and the capacity allocated at construction; a key with 10 % of the
    /// traffic is still found, and no distinct key looks heavy.
    #[test]
    fn issue_8_million_distinct_keys_bounded_memory() {
        let mut sketch = SpaceSaving::new(32);
        let capacity = sketch.capacity();
        assert!(capacity >= 32);
        let heavy = u64::MAX;
        for key in 0..1_000_000_u64 {
            sketch.add(key);
            if key % 9 == 0 {
                sketch.add(heavy);
            }
        }
        assert_eq!(sketch.counters().len(), 32);
        assert_eq!(sketch.capacity(), capacity, "the sketch never reallocates");
        assert_eq!(sketch.total(), 1_000_000 + 111_112);
        let (top, key) = sketch.top_guaranteed(1);
        assert_eq!(key, Some(heavy));
        assert!(top > 100_000, "{top}");
        // The distinct keys' lower bounds are tiny: the top three sum to the heavy key's
        // count plus almost nothing.
        let (top3, _) = sketch.top_guaranteed(3);
        assert!(top3 - top < 1_000, "{top3} {top}");

        sketch.reset();
        assert_eq!((sketch.total(), sketch.counters().len()), (0, 0));
        assert_eq!(sketch.capacity(), capacity);
    }
}
