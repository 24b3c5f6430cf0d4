//! The arithmetic of the benchmark's figures: medians of repetitions and ratios to the
//! baseline measured in the same run. Kept apart so it is tested without a lab.

/// Median; the mean of the middle two for an even count; NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Spread of repetitions as a fraction of their median: (max - min) / median. What
/// "within noise" is judged against.
pub fn rel_spread(xs: &[f64]) -> f64 {
    let m = median(xs);
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if xs.is_empty() || m == 0.0 {
        f64::NAN
    } else {
        (hi - lo) / m
    }
}

/// median(variant) / median(its baseline).
pub fn ratio(variant: &[f64], baseline: &[f64]) -> f64 {
    median(variant) / median(baseline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(ratio(&[9.0, 10.0, 11.0], &[20.0, 19.0, 21.0]), 0.5);
        assert!((rel_spread(&[9.0, 10.0, 11.0]) - 0.2).abs() < 1e-12);
    }
}
