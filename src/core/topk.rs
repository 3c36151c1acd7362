//! Bounded top-k selection without sorting everything: a min-heap of the
//! best `cap` entries, so a row that cannot enter costs one comparison.

/// A scored row. Higher `score` is better; ties go to the lower row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Higher is better.
    pub score: f32,
    /// Row in the index.
    pub row: u32,
}

impl Scored {
    /// True if `self` ranks strictly before `other`.
    #[inline]
    fn better(&self, other: &Scored) -> bool {
        self.score > other.score || (self.score == other.score && self.row < other.row)
    }
}

/// The best `cap` entries seen so far.
#[derive(Debug, Default, Clone)]
pub struct TopK {
    cap: usize,
    heap: Vec<Scored>,
}

impl TopK {
    /// Empties the heap and sets its capacity, keeping the allocation.
    pub fn reset(&mut self, cap: usize) {
        self.cap = cap;
        self.heap.clear();
        self.heap.reserve(cap);
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// True when `cap` entries are held.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.cap
    }

    /// The score an entry must beat to enter (-inf while not full).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.is_full() {
            self.heap.first().map_or(f32::NEG_INFINITY, |s| s.score)
        } else {
            f32::NEG_INFINITY
        }
    }

    /// Offers one entry.
    #[inline]
    pub fn push(&mut self, score: f32, row: u32) {
        let s = Scored { score, row };
        if self.heap.len() < self.cap {
            self.heap.push(s);
            self.sift_up(self.heap.len() - 1);
        } else if self.cap > 0 && s.better(&self.heap[0]) {
            self.heap[0] = s;
            self.sift_down(0);
        }
    }

    /// Offers every entry of another heap.
    pub fn merge(&mut self, other: &TopK) {
        for s in &other.heap {
            self.push(s.score, s.row);
        }
    }

    /// Moves the entries into `out`, best first.
    pub fn drain_sorted(&mut self, out: &mut Vec<Scored>) {
        out.clear();
        out.append(&mut self.heap);
        out.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let p = (i - 1) / 2;
            if self.heap[p].better(&self.heap[i]) {
                self.heap.swap(p, i);
                i = p;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut worst = i;
            if l < n && self.heap[worst].better(&self.heap[l]) {
                worst = l;
            }
            if r < n && self.heap[worst].better(&self.heap[r]) {
                worst = r;
            }
            if worst == i {
                break;
            }
            self.heap.swap(i, worst);
            i = worst;
        }
    }
}

impl TopK {
    /// The capacity set by the last `reset`.
    pub fn threshold_cap(&self) -> usize {
        self.cap
    }
}
