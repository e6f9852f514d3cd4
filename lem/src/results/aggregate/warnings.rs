//! The processes' own warnings in an aggregate, each said once: the same text from several
//! processes is one line naming them, and below-resolution windows (whose text carries each
//! window's length) are counted in one line.

use std::collections::{BTreeSet, HashMap};

use super::cycles::Item;

/// Marks the warning of a window shorter than the energy counter's resolution.
const BELOW_RESOLUTION: &str = "below_resolution:";

/// `0-3, 5, 7-9`.
fn ranges(ix: &BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = ix.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(", ")
}

fn who(ix: &BTreeSet<u32>) -> String {
    if ix.len() == 1 {
        format!("process {}", ranges(ix))
    } else {
        format!("processes {}", ranges(ix))
    }
}

/// The warnings of every result, each distinct text once (hashing, so linear in the number
/// of warnings), in first-seen order.
pub(super) fn process_warnings(results: &[Item<'_>]) -> Vec<String> {
    let mut order: Vec<(String, BTreeSet<u32>)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut below: (usize, BTreeSet<u32>, Option<String>) = (0, BTreeSet::new(), None);
    for (_, r) in results {
        let i = r.process_index;
        for w in &r.report.warnings {
            if w.contains(BELOW_RESOLUTION) {
                below.0 += 1;
                below.1.insert(i);
                below.2.get_or_insert_with(|| format!("process {i}: {w}"));
                continue;
            }
            match at.get(w.as_str()) {
                Some(k) => {
                    order[*k].1.insert(i);
                }
                None => {
                    at.insert(w.as_str(), order.len());
                    order.push((w.clone(), BTreeSet::from([i])));
                }
            }
        }
    }
    let mut out: Vec<String> = order
        .into_iter()
        .map(|(w, ix)| format!("{}: {w}", who(&ix)))
        .collect();
    if let (n, ix, Some(first)) = below {
        out.push(format!(
            "{n} window(s) were shorter than the energy counter's resolution (below_resolution), in {}; the first: {first}",
            who(&ix)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress_runs() {
        let ix: BTreeSet<u32> = [0, 1, 2, 3, 5, 7, 8, 9].into_iter().collect();
        assert_eq!(ranges(&ix), "0-3, 5, 7-9");
        assert_eq!(who(&BTreeSet::from([4])), "process 4");
    }
}
