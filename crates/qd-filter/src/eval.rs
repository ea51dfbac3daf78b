//! [`evaluate`]: the filter's accuracy and speed on a labelled directory.
//!
//! The directory holds `MANIFEST.tsv`: tab-separated with a header line naming at least
//! the columns `file` (a path relative to the directory) and `label` (`ham` or `spam`);
//! other columns are ignored. Files may start with an mbox `From ` line.
//!
//! Static mode judges every message with the rules alone, on the rayon pool. Online mode
//! follows the TREC spam-track protocol: messages in arrival order — sorted by their
//! newest Received time stamp (else Date; ties and undated messages keep manifest
//! order), as a deployment sees them — are each judged first, then their true label is
//! fed to the learner as staff feedback would be. Every judgement pins the clock to the
//! message's own arrival, so old corpora are not "old".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{arrival, Class, Filter, FilterError, FilterSettings, JudgeContext, Label, Learner};

/// How to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// TREC-style online learning instead of static rules.
    pub online: bool,
    /// Filter settings (weights, thresholds, ...).
    pub settings: FilterSettings,
}

/// Hits of one tag per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCount {
    pub ham: u32,
    pub spam: u32,
}

/// The figures of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub mode: String,
    pub ham: u32,
    pub spam: u32,
    /// Ham judged spam or virus.
    pub false_positives: u32,
    /// Spam judged ham.
    pub false_negatives: u32,
    /// false_positives / ham.
    pub fpr: f64,
    /// Spam caught / spam.
    pub recall: f64,
    /// Spam caught / messages judged spam.
    pub precision: f64,
    /// Messages per second, reading and parsing included.
    pub msgs_per_sec: f64,
    pub seconds: f64,
    /// How often each tag fired, per true class.
    pub tags: BTreeMap<String, TagCount>,
    /// Every message judged wrongly, in judging order (online: arrival order).
    pub misjudged: Vec<Misjudged>,
}

/// One message the filter got wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Misjudged {
    /// As named in the manifest.
    pub file: String,
    pub label: Label,
    pub score: f32,
    /// 0-based position in judging order (online: how much the learner had seen).
    pub position: usize,
}

struct Item {
    name: String,
    path: PathBuf,
    label: Label,
}

fn read_manifest(dir: &Path) -> Result<Vec<Item>, FilterError> {
    let path = dir.join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&path).map_err(|source| FilterError::Read {
        path: path.clone(),
        source,
    })?;
    let bad = |reason: String| FilterError::Manifest {
        path: path.clone(),
        reason,
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad("empty".into()))?
        .split('\t')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| bad(format!("no `{name}` column")))
    };
    let (file_col, label_col) = (col("file")?, col("label")?);
    let mut items = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let (Some(file), Some(label)) = (fields.get(file_col), fields.get(label_col)) else {
            return Err(bad(format!("line {} has too few columns", n + 2)));
        };
        let label = match label.trim() {
            "ham" => Label::Ham,
            "spam" => Label::Spam,
            other => return Err(bad(format!("line {}: label {other:?}", n + 2))),
        };
        items.push(Item {
            name: file.trim().to_string(),
            path: dir.join(file.trim()),
            label,
        });
    }
    Ok(items)
}

#[derive(Default)]
struct Tally {
    report: EvalReport,
}

impl Tally {
    fn add(&mut self, item: &Item, verdict: &crate::Verdict) {
        let (label, class, tags) = (item.label, verdict.class, &verdict.tags);
        let r = &mut self.report;
        let judged_spam = class != Class::Ham;
        if judged_spam != (label == Label::Spam) {
            r.misjudged.push(Misjudged {
                file: item.name.clone(),
                label,
                score: verdict.score,
                position: (r.ham + r.spam) as usize,
            });
        }
        match label {
            Label::Ham => {
                r.ham += 1;
                if judged_spam {
                    r.false_positives += 1;
                }
            }
            Label::Spam => {
                r.spam += 1;
                if !judged_spam {
                    r.false_negatives += 1;
                }
            }
        }
        for t in tags {
            let c = r.tags.entry(t.name.clone()).or_default();
            match label {
                Label::Ham => c.ham += 1,
                Label::Spam => c.spam += 1,
            }
        }
    }

    fn finish(mut self, mode: &str, seconds: f64) -> EvalReport {
        let r = &mut self.report;
        r.mode = mode.to_owned();
        let caught = f64::from(r.spam - r.false_negatives);
        r.fpr = ratio(f64::from(r.false_positives), f64::from(r.ham));
        r.recall = ratio(caught, f64::from(r.spam));
        r.precision = ratio(caught, caught + f64::from(r.false_positives));
        r.seconds = seconds;
        r.msgs_per_sec = ratio(f64::from(r.ham + r.spam), seconds);
        self.report
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn read(path: &Path) -> Result<Vec<u8>, FilterError> {
    std::fs::read(path).map_err(|source| FilterError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Evaluates the filter on `dir` (see the module docs).
pub fn evaluate(dir: &Path, opts: &EvalOptions) -> Result<EvalReport, FilterError> {
    let items = read_manifest(dir)?;
    let filter = Filter::new(opts.settings.clone())?;
    let start = Instant::now();
    if !opts.online {
        let judged: Vec<crate::Verdict> = items
            .par_iter()
            .map(|item| {
                let raw = read(&item.path)?;
                let view = qd_mail::MessageView::from_raw(&raw);
                Ok(filter.judge(&view, &JudgeContext::pinned_to(&view)))
            })
            .collect::<Result<_, FilterError>>()?;
        let seconds = start.elapsed().as_secs_f64();
        let mut tally = Tally::default();
        for (item, v) in items.iter().zip(&judged) {
            tally.add(item, v);
        }
        return Ok(tally.finish("static", seconds));
    }

    // Online: views first (to know arrival order), then judge-then-learn in order.
    let mut views: Vec<(usize, Option<i64>, qd_mail::MessageView)> = items
        .par_iter()
        .enumerate()
        .map(|(i, item)| {
            let raw = read(&item.path)?;
            let view = qd_mail::MessageView::from_raw(&raw);
            Ok((i, arrival(&view).map(|t| t.timestamp()), view))
        })
        .collect::<Result<_, FilterError>>()?;
    views.sort_by_key(|(i, t, _)| (t.unwrap_or(i64::MAX), *i));
    let mut learner = Learner::new().with_excluded_domains(opts.settings.our_domains.clone());
    let mut tally = Tally::default();
    for (i, _, view) in &views {
        let Some(item) = items.get(*i) else { continue };
        let verdict = filter.judge(view, &JudgeContext::pinned_to(view).with_learner(&learner));
        tally.add(item, &verdict);
        let rules: Vec<&str> = verdict.rule_names().collect();
        let prior = crate::learn::prior(verdict.rule_score(), opts.settings.thresholds.spam);
        let features = learner.features(view, &rules).with_prior(prior);
        learner.learn(&features, item.label);
    }
    Ok(tally.finish("online", start.elapsed().as_secs_f64()))
}
