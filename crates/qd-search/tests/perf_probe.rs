// TEMPORARY measurement, deleted after use.
#![allow(clippy::unwrap_used)]
use std::time::Instant;

use chrono::{TimeZone, Utc};
use qd_search::{Query, SearchDoc, SearchIndex};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Zipf-ish rank in 0..n.
    fn zipf(&mut self, n: usize) -> usize {
        if n == VOCAB {
            let cdf = cdf();
            let u = self.unit();
            return cdf.partition_point(|&c| c < u).min(n - 1);
        }
        let r = ((n as f64).ln() * self.unit()).exp() as usize;
        r.saturating_sub(1).min(n - 1)
    }
}

const VOCAB: usize = 3000;
fn cdf() -> &'static Vec<f64> {
    static C: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let w: Vec<f64> = (0..VOCAB).map(|r| 1.0 / (r as f64 + 2.7).powf(1.05)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        w.iter().map(|x| { acc += x / total; acc }).collect()
    })
}

fn word(i: usize) -> String {
    const SYL: [&str; 16] = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "pe", "da", "gu", "fi", "ho", "ze", "bi", "wa"];
    let mut s = String::new();
    let mut x = i + 16;
    while x > 0 {
        s.push_str(SYL[x % 16]);
        x /= 16;
    }
    s
}

#[test]
fn perf_probe() {
    let n: usize = std::env::var("N").map(|s| s.parse().unwrap()).unwrap_or(1_000_000);
    let vocab = VOCAB;
    let words: Vec<String> = (0..vocab).map(word).collect();
    let dir = std::path::PathBuf::from("/tmp/qd_perf_index");
    let fresh = !dir.exists();
    let index = SearchIndex::open_or_create(&dir).unwrap();
    if fresh {
        let t = Instant::now();
        let mut w = index.writer(1_000_000_000, 2).unwrap();
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let statuses = ["open", "pending", "closed"];
        for id in 0..n {
            let text = |k: usize, rng: &mut Rng| {
                (0..k).map(|_| words[rng.zipf(vocab)].as_str()).collect::<Vec<_>>().join(" ")
            };
            let subject = text(3 + (rng.next() % 6) as usize, &mut rng);
            let body = text(30 + (rng.next() % 120) as usize, &mut rng);
            let person = rng.zipf(20_000);
            let doc = SearchDoc {
                message_db_id: id as i64,
                ticket_id: (id / 3) as i64,
                ticket_number: (id / 3) as i64,
                subject,
                body,
                from: format!("{} {} <{}.{}@{}.example>", words[person % 997], words[person % VOCAB], words[person % 997], words[person % VOCAB], words[person % 300]),
                to: "support@quietdesk.test".into(),
                status: statuses[(rng.next() % 3) as usize].into(),
                date: Utc.timestamp_opt(1_600_000_000 + (id as i64) * 120, 0).unwrap(),
                tags: if rng.next() % 4 == 0 { vec![words[rng.zipf(50)].clone()] } else { vec![] },
                has_attachment: rng.next() % 5 == 0,
            };
            w.add(&doc).unwrap();
        }
        w.commit().unwrap();
        w.merge_away_deleted().unwrap();
        eprintln!("indexed {n} in {:?}", t.elapsed());
    }
    eprintln!("num_docs {}", index.num_docs().unwrap());
    let mut rng = Rng(42);
    let words: &'static Vec<String> = Box::leak(Box::new(words));
    let zw = move |r: &mut Rng| words[r.zipf(vocab)].clone();
    let uw = move |r: &mut Rng| words[(r.next() % vocab as u64) as usize].clone();
    let cats: Vec<(&str, Box<dyn Fn(&mut Rng) -> String>)> = vec![
        ("one-term-zipf", Box::new(move |r: &mut Rng| zw(r))),
        ("one-term-uniform", Box::new(move |r: &mut Rng| uw(r))),
        ("two-term-zipf", Box::new(move |r: &mut Rng| format!("{} {}", zw(r), zw(r)))),
        ("two-term-uniform", Box::new(move |r: &mut Rng| format!("{} {}", uw(r), uw(r)))),
        ("three-term-zipf", Box::new(move |r: &mut Rng| format!("{} {} {}", zw(r), zw(r), zw(r)))),
        ("phrase-zipf", Box::new(move |r: &mut Rng| format!("\"{} {}\"", zw(r), zw(r)))),
        ("phrase-uniform", Box::new(move |r: &mut Rng| format!("\"{} {}\"", uw(r), uw(r)))),
        ("phrase3-zipf", Box::new(move |r: &mut Rng| format!("\"{} {} {}\"", zw(r), zw(r), zw(r)))),
        ("from-filter", Box::new(move |r: &mut Rng| format!("from:{}", words[(r.next() % 997) as usize]))),
        ("status-filter", Box::new(|r: &mut Rng| format!("status:{}", ["open","pending","closed"][(r.next() % 3) as usize]))),
        ("zword+status", Box::new(move |r: &mut Rng| format!("{} status:open", zw(r)))),
        ("zword+from", Box::new(move |r: &mut Rng| format!("{} from:{}", zw(r), words[(r.next() % 997) as usize]))),
        ("zword+status+date", Box::new(move |r: &mut Rng| format!("{} status:open after:2021-01-01", zw(r)))),
        ("zword+has+neg", Box::new(move |r: &mut Rng| format!("{} has:attachment -{}", zw(r), zw(r)))),
        ("tag-or", Box::new(move |r: &mut Rng| format!("tag:{} OR tag:{}", words[(r.next() % 50) as usize], words[(r.next() % 50) as usize]))),
        ("status+before", Box::new(|r: &mut Rng| format!("status:closed before:202{}-0{}-01", r.next() % 3, 1 + r.next() % 9))),
        ("empty", Box::new(|_r: &mut Rng| String::new())),
    ];
    for (name, gen) in &cats {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..300 {
            let q = Query::parse(&gen(&mut rng)).unwrap();
            let t = Instant::now();
            hits += index.search(&q, 10).unwrap().len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!("{name:20} p50 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms  avg hits {}", times[150], times[296], times[299], hits / 300);
    }
}
