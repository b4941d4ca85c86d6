//! Progress for a person: a line on standard error per service saying how
//! many lookups are to be made and how long the rate limit will make them
//! wait, and on a terminal a bar per service that counts the waiting down.

use super::Service;
use std::time::Duration;

/// Progress for a person: a bar per service on a terminal, and a line on
/// standard error saying how much there is to do and how long the rate
/// limits will make it wait.
pub struct Progress {
    bars: Option<indicatif::MultiProgress>,
    pub(super) plan: bool,
}

impl Progress {
    pub fn new(bars: bool, plan: bool) -> Progress {
        Progress {
            bars: bars.then(indicatif::MultiProgress::new),
            plan,
        }
    }

    pub fn hidden() -> Progress {
        Progress::new(false, false)
    }

    pub(super) fn bar(&self, service: Service, len: usize) -> indicatif::ProgressBar {
        let Some(multi) = &self.bars else {
            return indicatif::ProgressBar::hidden();
        };
        let bar = multi.add(indicatif::ProgressBar::new(len as u64));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} {msg} [{elapsed}]",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(service.name());
        bar.enable_steady_tick(Duration::from_millis(500));
        bar
    }
}

/// A duration for a person: `45 s`, `14 min`, `2 h 5 min`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min", secs.div_ceil(60))
    } else {
        let minutes = secs.div_ceil(60);
        format!("{} h {} min", minutes / 60, minutes % 60)
    }
}

/// What a service's progress bar says.
pub(super) struct Shown<'a> {
    pub(super) bar: &'a indicatif::ProgressBar,
    /// The rate limit's wait for the lookup in hand and the rest.
    pub(super) left: Duration,
}

impl Shown<'_> {
    pub(super) fn say(&self, message: String) {
        if !self.bar.is_hidden() {
            self.bar.set_message(message);
        }
    }

    /// `left` in all, `next` before the next request.
    pub(super) fn waiting(&self, left: Duration, next: Duration) {
        self.say(match (left.is_zero(), next.is_zero()) {
            (true, _) => String::new(),
            (false, true) => format!("about {} of waiting for the rate limit", human(left)),
            (false, false) => format!(
                "about {} of waiting for the rate limit, next request in {}",
                human(left),
                human(next)
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people() {
        assert_eq!(human(Duration::from_millis(1500)), "2 s");
        assert_eq!(human(Duration::from_secs(60)), "1 min");
        assert_eq!(human(Duration::from_secs(14 * 60 - 5)), "14 min");
        assert_eq!(human(Duration::from_secs(2 * 3600 + 5 * 60)), "2 h 5 min");
    }
}
