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

/// Median absolute deviation from the median: the scatter of one sample, robust to the
/// odd repetition another job on the machine spoiled.
pub fn mad(xs: &[f64]) -> f64 {
    let m = median(xs);
    let dev: Vec<f64> = xs.iter().map(|x| (x - m).abs()).collect();
    median(&dev)
}

/// Whether a figure meets its goal, given the noise it was measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    /// The figure is closer to the goal than the noise: this run cannot tell.
    Inconclusive,
}

impl Verdict {
    /// `margin` > 0 means the figure is on the good side of the goal by that much. An
    /// unknown noise (NaN: a single sample) cannot tell.
    pub fn judge(margin: f64, noise: f64) -> Verdict {
        if !margin.is_finite() || noise.is_nan() || margin.abs() <= noise {
            Verdict::Inconclusive
        } else if margin > 0.0 {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }

    pub fn exact(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }

    /// All parts met: met; any part not met: not met; else inconclusive.
    pub fn all(parts: &[Verdict]) -> Verdict {
        if parts.contains(&Verdict::NotMet) {
            Verdict::NotMet
        } else if parts.iter().all(|v| *v == Verdict::Met) {
            Verdict::Met
        } else {
            Verdict::Inconclusive
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "not met",
            Verdict::Inconclusive => "inconclusive (within noise)",
        }
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
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 100.0]), 1.0);
    }

    #[test]
    fn verdicts_respect_the_noise() {
        assert_eq!(Verdict::judge(0.02, 0.01), Verdict::Met);
        assert_eq!(Verdict::judge(-0.05, 0.01), Verdict::NotMet);
        assert_eq!(Verdict::judge(-0.05, 0.10), Verdict::Inconclusive);
        assert_eq!(Verdict::judge(1.0, f64::NAN), Verdict::Inconclusive);
        assert_eq!(
            Verdict::all(&[Verdict::Met, Verdict::Inconclusive]),
            Verdict::Inconclusive
        );
        assert_eq!(
            Verdict::all(&[Verdict::NotMet, Verdict::Inconclusive]),
            Verdict::NotMet
        );
    }
}
