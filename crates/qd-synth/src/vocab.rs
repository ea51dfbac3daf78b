//! The body vocabulary and its Zipf-like sampler.
//!
//! Search benchmarks need term frequencies like real mail: a few words everywhere, a long
//! tail that is rare. The lists below are roughly in order of how often a hosting
//! company's support mail uses them; inflected forms are derived and ranked behind their
//! stems, which gives a few thousand distinct terms. Sampling uses Walker's alias method,
//! so one word costs one random number whatever the vocabulary size.

use rand::Rng;

/// Function words and the most frequent terms, most frequent first. Never inflected.
const CORE: &str = "
the to i a and is it of for on we our not my this that you be with have can in are but
at it's as from do was has if no there so all will an or would could also just what when
now after since still get any some us me they by been one more about out up which other
only how then new same again because why these their them here should than its were had
did does like very too back yet into over please thanks thank hello hi dear regards kind
best cheers sorry yes ok okay don't can't doesn't isn't didn't won't i'm we're you're
there's let's i've we've help problem server website site email mail account issue error
";

/// Nouns of the trade and of business mail; plurals are derived.
const NOUNS: &str = "
domain password invoice payment customer support ticket message page database backup
certificate hosting plan package upgrade day time week month hour minute morning
afternoon evening team colleague user client request question answer reply information
access login file folder directory disk space quota memory load traffic bandwidth
connection network firewall port record nameserver zone cache performance speed update
version installation configuration setting option panel dashboard form contact address
phone number order subscription renewal contract price cost amount discount bill credit
refund transfer bank reference period year migration test environment deployment release
script job task process service application plugin theme template extension module
library framework language shop store product checkout cart mailbox inbox alias
forwarder filter list attachment screenshot log entry line output response status code
timeout outage incident maintenance window notification alert monitor report graph usage
limit resource instance machine node cluster container image volume snapshot copy archive
key token secret authority chain redirect link path query parameter header cookie session
browser device laptop computer tablet company business office manager developer designer
agency partner reseller provider registrar owner administrator staff department name
mistake change difference reason solution workaround step detail explanation example
case situation moment week-end weekend holiday deadline launch campaign newsletter
visitor search ranking result sale revenue loss complaint apology delay answer option
feature tool command terminal key-pair fingerprint signature record-set subdomain
wildcard mailserver webmail client-area portal account-number customer-number vat
receipt statement overview summary document pdf spreadsheet note comment attempt try
restart reboot crash failure bug fix patch vulnerability attack hacker malware virus
scan password-reset link-text button menu tab field column row table index query-log
sender recipient bounce delivery queue relay blacklist blocklist reputation header-line
draft folder-structure quota-warning storage gigabyte megabyte terabyte core thread
worker pool limit-increase trial demo account-manager invoice-address postcode city
country street building floor desk call voicemail chat meeting appointment agreement
offer quote proposal estimate budget project website-builder webshop blog forum wiki
gallery photo video upload download stream player font style layout menu-item footer
banner popup captcha robot crawler bot feed sitemap category tag archive-page permalink
cronjob daemon socket pipe signal permission owner-group user-group role admin-role
editor subscriber member guest visitor-count pageview session-id cart-item coupon voucher
shipping parcel tracking warehouse supplier supplier-feed stock price-list catalogue
";

/// More nouns, rarer than the first list.
const NOUNS_MORE: &str = "
accountant advice agenda allowance amendment analysis announcement answer-time
application-form approval architecture area argument arrangement article aspect
assessment assignment assistance assistant assumption audience audit author
authentication authorization availability average awareness balance bandwidth-limit
batch behaviour benefit bill-run birthday board boss branch brand breach breakdown
brochure bucket buffer bundle buyer calendar campaign-page capacity card career
catalog cause certificate-request channel chapter charge-back checklist choice
circumstance claim class clause colleague-account collection combination commission
commitment committee community comparison compensation competitor component
compliance concern condition conference confirmation conflict consent consequence
consultant consumer content context contract-term contribution control conversation
conversion copy-paste corner correction correspondence council counter coupon-code
course coverage creditor criteria customer-service cutover dashboard-view dataset
date deal debit debt decision default definition degree delivery-address demand
description design destination device-list diagnosis dialog direction director
discount-code discussion dispute distribution division domain-name download-link
duration duty editor-role effect effort element emergency employee employer
encryption end-user engineer enquiry enterprise entrance equipment escalation
estimate-request event evidence exception exchange expense experience expert
expiration expiry explanation-mail extension-request facility factor failover
family fee feedback figure finance firm fix-date flow focus folder-name forecast
format foundation fraud frequency function fund gap gateway goal government grant
group guarantee guide guideline handbook hardware headline health history hold
host-name household identity impact implementation improvement incident-report
income increase indicator industry infrastructure initiative input inquiry
inspection installer instruction insurance integration intention interface
interruption interval introduction inventory investment invitation item journal
judgement keyboard knowledge label laptop-bag latency law lawyer layer leader
lease lesson letter level licence license lifetime light limit-reached load-balancer
location lock logo loyalty magazine majority manual margin market material matter
measure mechanism media-file member-area memo method metric middleware milestone
mind minimum minute-rate mirror mobile model modification money motivation
mouse movement name-server need negotiation network-card news notebook notice
objective obligation occasion offering opinion opportunity organisation outcome
overview-page owner-account packet page-load pair paper paragraph participant
password-manager payment-method payroll penalty percentage permission-error person
perspective phase philosophy picture piece pipeline placeholder platform policy
portfolio position possibility post practice preference premium-plan preparation
presentation pressure prevention principle printer priority privacy probability
procedure producer profile profit program progress promise promotion proof
property protection protocol provision publication purchase purpose quality
quantity quarter quotation range rate reaction reader reality recommendation
recovery reduction region registration regulation relation relationship reminder
removal rent repair replacement representative reputation-score requirement
research reservation resolution respect responsibility restriction retention
return review revision reward risk roadmap rule safety salary sample satisfaction
saving scale scenario schedule scheme scope screen sector security segment selection
seller seminar sequence series service-level severity share-link shift signup
skill slot software-update source specialist specification sponsor spreadsheet-file
stage stakeholder standard-plan statement-period statistic strategy strength
structure student subject submission success suggestion supply surface survey
suspension switch system tariff teacher technician technology telephone tenant
term territory testimonial text theory threshold ticket-number tier timeline
timestamp timezone topic total tracker trade training transaction transition
translation trend trouble trust tutorial type unit upgrade-path uptime-guarantee
user-account validation value variable vendor verification vision volume-discount
voucher-code warning warranty way weakness web-form webhook website-owner welcome
whitelist widget winner wording workflow workload workspace writer zone-file
";

/// More verbs, rarer than the first list.
const VERBS_MORE: &str = "
accelerate achieve acknowledge activate adapt adjust administer adopt affect
aggregate alert allocate alter analyse announce anticipate apply appoint archive
arrange assess assign assist attempt authenticate authorise automate avoid
benchmark bill bounce browse bundle calculate capture categorise certify clarify
clone collect combine comment commit communicate compare compile complete comply
compute concern conclude connect consider consolidate consult contain continue
convert correct count cover crawl customise debug decrypt define delay deliver
depend deprecate design detect determine develop diagnose differ discuss dispatch
display document double downgrade duplicate encrypt end ensure estimate evaluate
exceed exclude execute exist expand experience extend extract fetch fill filter
finish follow format generate handle identify ignore implement indicate install
integrate intend interrupt introduce invite isolate issue join label launch limit
link list locate lock maintain mark match merge minimise mirror modify mount
navigate negotiate obtain offer operate organise outline overwrite parse pause
perform persist phone post postpone prepare present prevent print prioritise
proceed produce propose protect provide provision queue quote rank reach react
recover reduce reflect refuse regenerate reinstall relate release rely remain
repair repeat replace replicate represent reproduce reroute reserve resend resize
resume retain retrieve return revert review revoke rotate route sanitise scale
scan search secure separate serve share shift sign simplify sort specify split
start store stream submit subscribe succeed suffer supply support suspend switch
tag target terminate throttle track train translate troubleshoot trust tune
unblock uninstall unlock unsubscribe upgrade validate visit warn whitelist
";

/// More adjectives, rarer than the first list.
const OTHER_MORE: &str = "
accessible accurate actual administrative affordable alternative annoying
anonymous apparent appropriate approximate automatic average aware brief broad
busy careful cheap clean closed common compatible complex confidential
confusing consistent constant continuous critical crucial dangerous dedicated
deep delayed direct disappointed dynamic efficient encrypted essential exact
excellent expensive experienced explicit extended fair familiar false final
financial flexible formal former frequent friendly functional general global
helpful hidden identical immediate incomplete incorrect independent individual
initial invalid-looking legal legitimate limited live logical long major manual
maximum medium minor missing mobile-friendly modern multiple necessary negative
nervous obvious official ongoing open optional original outdated overdue
particular pending perfect personal physical pleased polite popular positive
potential practical precise present pretty previous-month proper quiet rare
reasonable recent relevant remaining repeated required responsible restricted
safe scheduled secret sensitive serious shared short significant similar
simple-looking slow-loading smooth social solid specific static strict strong
successful sudden suitable suspicious technical terrible thorough total
transparent typical unexpected unknown unnecessary unusual updated upset
useful useless various visible vulnerable warm weekly-report wide worried
";

/// Verbs; `stem:past:gerund` where English spelling is irregular or doubles a consonant.
const VERBS: &str = "
work try check look need fix solve resolve restart reboot install update upgrade
configure change add remove delete create open close reset restore move migrate renew
cancel confirm verify test load access connect reach respond reply answer ask explain
understand seem appear happen occur fail crash block allow enable disable use point
expire forward redirect upload download report notice contact call wait expect receive
receive advise suggest recommend investigate escalate monitor measure improve optimize
cache clear flush purge compress backup schedule trigger retry refresh reload deploy
publish order charge book invoice process handle manage host register transfer import
export sync copy paste type enter click select submit save update edit rename share
attach include mention describe notify inform remind request require accept reject
approve deny complain apologise appreciate hope want wish like prefer decide agree
assume guess believe wonder realize discover learn mention solve
send:sent:sending get:got:getting see:saw:seeing run:ran:running set:set:setting
find:found:finding know:knew:knowing think:thought:thinking pay:paid:paying
buy:bought:buying make:made:making take:took:taking give:gave:giving tell:told:telling
say:said:saying go:went:going stop:stopped:stopping drop:dropped:dropping
plan:planned:planning log:logged:logging hang:hung:hanging begin:began:beginning
write:wrote:writing read:read:reading build:built:building lose:lost:losing
keep:kept:keeping mean:meant:meaning leave:left:leaving come:came:coming put:put:putting
forget:forgot:forgetting sell:sold:selling hear:heard:hearing feel:felt:feeling
choose:chose:choosing break:broke:breaking show:showed:showing spend:spent:spending
";

/// Adjectives, adverbs and the like; not inflected.
const OTHER: &str = "
slow fast down available unavailable broken wrong correct right strange weird urgent
important possible impossible normal usual different old last next first second third
quick simple easy hard secure insecure valid invalid expired active inactive online
offline public private external internal local remote empty full large small big high
low unfortunately apparently currently already recently suddenly probably definitely
soon maybe perhaps actually really completely partially sometimes always never often
today yesterday tomorrow tonight asap immediately quickly properly correctly manually
automatically daily weekly monthly yearly annual free paid extra additional separate
whole entire several many few most least every each both either neither another such
own certain clear unclear fine good bad great better worse happy unhappy sure unsure
able unable ready late early previous current main primary secondary temporary
permanent default custom standard premium basic professional business-critical
responsive unresponsive intermittent random constant regular irregular stable unstable
reliable unreliable huge tiny enough below above before during within without between
through across against along around behind beside despite except inside outside toward
upon via per instead otherwise however therefore meanwhile anyway although though
unless whether while until whenever wherever somehow somewhere someone something
anything everything nothing nobody everybody everyone anyone
";

/// Names of software, protocols and error strings; frequent in hosting mail, not English.
const TECH: &str = "
dns mx spf dkim dmarc ssl tls https http smtp imap pop3 ftp sftp ssh vps php mysql
mariadb postgresql nginx apache wordpress woocommerce magento joomla drupal laravel
nodejs python ruby git cpanel plesk directadmin cloudflare letsencrypt certbot ipv4 ipv6
ip api json xml csv html css javascript cron .htaccess robots.txt sitemap.xml redis
memcached varnish elasticsearch docker kubernetes ubuntu debian centos linux windows
outlook thunderbird gmail iphone android macos chrome firefox safari 404 500 502 503 504
403 401 cname txt ptr rdns ttl a-record aaaa dnssec whois epp auth-code php-fpm opcache
composer npm wp-admin wp-config.php phpmyadmin mysqldump rsync tar gzip zip scp putty
filezilla winscp cyberduck roundcube rainloop spamassassin rspamd postfix dovecot exim
fail2ban iptables nftables ufw systemd journalctl top htop df du free uptime ping
traceroute dig nslookup curl wget openssl csr crt pem pfx intermediate root-ca
err_connection_refused err_name_not_resolved err_ssl_protocol_error servfail nxdomain
refused etimedout econnreset 550 554 451 421 5.7.1 4.7.0 dns_probe_finished_nxdomain
too_many_redirects mixed-content hsts ocsp sni http/2 http/3 quic tcp udp icmp nat vpn
vlan bgp ddos waf cdn s3 object-storage nvme ssd raid lvm ext4 zfs kvm proxmox vmware
hyper-v 8.1 8.2 8.3 7.4 5.7 10.6 16.04 20.04 22.04 24.04 utf-8 iso-8859-1 base64
";

/// How steeply frequency falls with rank; 1.0 is classic Zipf, the offset flattens the
/// head as in natural text (Zipf–Mandelbrot).
const EXPONENT: f64 = 1.05;
const OFFSET: f64 = 2.7;

pub struct Vocabulary {
    words: Vec<String>,
    /// Walker's alias tables: bucket `i` yields word `i` with probability `prob[i]`,
    /// otherwise word `alias[i]`.
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Vocabulary {
    pub fn new() -> Vocabulary {
        let words = ranked_words();
        let weights: Vec<f64> = (0..words.len())
            .map(|r| 1.0 / (r as f64 + OFFSET).powf(EXPONENT))
            .collect();
        let (prob, alias) = alias_tables(&weights);
        Vocabulary { words, prob, alias }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.words.len()
    }

    #[cfg(test)]
    pub fn word(&self, rank: usize) -> &str {
        &self.words[rank]
    }

    /// Draws one word with Zipf-like probability.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> &str {
        let r: u64 = rng.gen();
        let bucket = ((r >> 32) as usize * self.words.len()) >> 32;
        let coin = (r & 0xffff_ffff) as f64 / 4_294_967_296.0;
        let i = if coin < self.prob[bucket] {
            bucket
        } else {
            self.alias[bucket] as usize
        };
        &self.words[i]
    }
}

/// Builds the ranked list: stems in list order, interleaved so that each family appears
/// at every frequency level, then derived forms ranked a little behind their stems.
fn ranked_words() -> Vec<String> {
    let mut ranked: Vec<(f64, String)> = Vec::new();
    for (i, w) in CORE.split_whitespace().enumerate() {
        ranked.push((i as f64, w.to_owned()));
    }
    let base = ranked.len() as f64;
    // Spread each family over the ranks behind CORE in proportion to its length.
    #[derive(PartialEq)]
    enum Kind {
        Noun,
        Verb,
        Plain,
    }
    let families = [
        (NOUNS, 0.0, 1.0, Kind::Noun),
        (VERBS, 0.0, 1.1, Kind::Verb),
        (OTHER, 0.0, 1.3, Kind::Plain),
        (TECH, 0.0, 1.6, Kind::Plain),
        (NOUNS_MORE, 500.0, 1.5, Kind::Noun),
        (VERBS_MORE, 600.0, 1.8, Kind::Verb),
        (OTHER_MORE, 700.0, 2.0, Kind::Plain),
    ];
    for (list, start, stretch, kind) in families {
        for (i, entry) in list.split_whitespace().enumerate() {
            let rank = base + start + i as f64 * stretch * 1.8;
            let mut parts = entry.split(':');
            let stem = parts.next().unwrap_or(entry);
            ranked.push((rank, stem.to_owned()));
            if kind == Kind::Noun {
                ranked.push((rank * 1.6 + 40.0, plural(stem)));
            } else if kind == Kind::Verb {
                let past = parts.next().map_or_else(|| past(stem), str::to_owned);
                let gerund = parts.next().map_or_else(|| gerund(stem), str::to_owned);
                ranked.push((rank * 1.4 + 30.0, past));
                ranked.push((rank * 1.9 + 60.0, gerund));
                ranked.push((rank * 2.5 + 90.0, plural(stem)));
            }
        }
    }
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut seen = std::collections::HashSet::new();
    ranked
        .into_iter()
        .filter_map(|(_, w)| seen.insert(w.clone()).then_some(w))
        .collect()
}

fn ends_consonant_y(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() >= 2 && b[b.len() - 1] == b'y' && !b"aeiou".contains(&b[b.len() - 2])
}

fn plural(w: &str) -> String {
    if ends_consonant_y(w) {
        format!("{}ies", &w[..w.len() - 1])
    } else if ["s", "x", "ch", "sh", "z"].iter().any(|e| w.ends_with(e)) {
        format!("{w}es")
    } else {
        format!("{w}s")
    }
}

fn past(w: &str) -> String {
    if ends_consonant_y(w) {
        format!("{}ied", &w[..w.len() - 1])
    } else if w.ends_with('e') {
        format!("{w}d")
    } else {
        format!("{w}ed")
    }
}

fn gerund(w: &str) -> String {
    if w.ends_with('e') && !w.ends_with("ee") {
        format!("{}ing", &w[..w.len() - 1])
    } else {
        format!("{w}ing")
    }
}

/// Vose's construction of Walker's alias tables.
fn alias_tables(weights: &[f64]) -> (Vec<f64>, Vec<u32>) {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
    let mut prob = vec![1.0; n];
    let mut alias: Vec<u32> = (0..n as u32).collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
    while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
        prob[s] = scaled[s];
        alias[s] = l as u32;
        scaled[l] -= 1.0 - scaled[s];
        if scaled[l] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    // Whatever is left is 1.0 up to rounding; prob stays 1.0 for those buckets.
    (prob, alias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_few_thousand_distinct_words() {
        let v = Vocabulary::new();
        assert!((2500..6000).contains(&v.len()), "{}", v.len());
        eprintln!("vocabulary: {} words", v.len());
        assert_eq!(v.word(0), "the");
    }

    #[test]
    fn frequencies_fall_with_rank() {
        let v = Vocabulary::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..200_000 {
            *counts.entry(v.sample(&mut rng).to_owned()).or_insert(0u32) += 1;
        }
        let the = counts["the"];
        let rank100 = counts.get(v.word(100)).copied().unwrap_or(0);
        let rank1000 = counts.get(v.word(1000)).copied().unwrap_or(0);
        // Zipf: rank 0 about 40x rank 100, rank 100 about 10x rank 1000.
        assert!(
            the > 20 * rank100 && rank100 > 4 * rank1000,
            "{the} {rank100} {rank1000}"
        );
        assert!(counts.len() > 1500, "tail too thin: {}", counts.len());
    }

    #[test]
    fn inflection() {
        assert_eq!(plural("query"), "queries");
        assert_eq!(plural("key"), "keys");
        assert_eq!(plural("box"), "boxes");
        assert_eq!(past("configure"), "configured");
        assert_eq!(past("try"), "tried");
        assert_eq!(gerund("configure"), "configuring");
    }
}
