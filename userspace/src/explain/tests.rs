use std::collections::HashSet;

use super::*;

fn kb() -> &'static KnowledgeBase {
    KnowledgeBase::builtin()
}

#[test]
fn wemo_plug_and_belkin_cloud() {
    let e = kb().explain("api.xbcs.net", &[], Some("Belkin International Inc."));
    assert_eq!(e.organisation.as_deref(), Some("Belkin (Wemo)"));
    assert_eq!(e.category, Category::VendorCloud);
    assert_eq!(e.registrable.as_deref(), Some("xbcs.net"));
    assert_eq!(e.expected, Some(true));
    assert!(e.description.contains("Wemo"), "{}", e.description);
    assert_eq!(e.source, "builtin:belkin_wemo");
    // The same cloud is unexpected for another maker's device.
    let other = kb().explain("api.xbcs.net", &[], Some("Roku, Inc."));
    assert_eq!(other.expected, Some(false));
    assert_eq!(kb().explain("api.xbcs.net", &[], None).expected, None);
}

#[test]
fn naval_observatory_is_a_public_clock() {
    let e = kb().explain("tock.usno.navy.mil.", &[], Some("Belkin"));
    assert_eq!(e.category, Category::TimeService);
    assert_eq!(e.domain, "tock.usno.navy.mil");
    assert_eq!(e.expected, Some(true), "every device may need a clock");
    let text = e.description.to_lowercase();
    assert!(text.contains("clock") && text.contains("time"), "{text}");
    // Calm: no alarming words.
    for word in ["military", "surveil", "spy", "danger", "warning"] {
        assert!(!text.contains(word), "{word} in {text}");
    }
}

#[test]
fn streaming_tv_ads_and_measurement() {
    let dc = kb().explain("ad.doubleclick.net", &[], Some("Samsung"));
    assert_eq!(dc.category, Category::Advertising);
    assert!(dc.organisation.as_deref().unwrap().contains("Google"));
    let sr = kb().explain("sb.scorecardresearch.com", &[], Some("Samsung"));
    assert_eq!(sr.category, Category::TrackingAnalytics);
    assert!(sr.organisation.as_deref().unwrap().contains("Comscore"));
    assert!(sr.description.contains("measure"), "{}", sr.description);
}

#[test]
fn longest_suffix_wins() {
    assert_eq!(
        kb().explain("time.google.com", &[], None).category,
        Category::TimeService
    );
    assert_eq!(
        kb().explain("www.google.com", &[], None).category,
        Category::VendorCloud
    );
    assert_eq!(
        kb().explain("connectivitycheck.gstatic.com", &[], None)
            .category,
        Category::ConnectivityCheck
    );
    assert_eq!(
        kb().explain("pool.ntp.org", &[], None).category,
        Category::TimeService
    );
    assert_eq!(
        kb().explain("2.pool.ntp.org", &[], None).category,
        Category::TimeService
    );
}

#[test]
fn unknown_names_say_what_is_known() {
    // A cloud host name: hosted on AWS, operator unknown.
    let e = kb().explain("ec2-203-0-113-5.compute-1.amazonaws.com", &[], None);
    assert_eq!(e.category, Category::CdnHosting);
    assert!(
        e.description.contains("hosted on Amazon Web Services"),
        "{}",
        e.description
    );
    // An unknown name whose DNS answer went through a known CDN.
    let e = kb().explain(
        "api.unknown-gadget.example.com",
        &[
            "api.unknown-gadget.example.com.edgekey.net".into(),
            "e1234.a.akamaiedge.net".into(),
        ],
        None,
    );
    assert_eq!(e.organisation, None);
    assert_eq!(e.category, Category::CdnHosting);
    assert!(
        e.description.contains("hosted on Akamai"),
        "{}",
        e.description
    );
    assert_eq!(e.registrable.as_deref(), Some("example.com"));
    // Nothing known at all: the registrable domain is still shown.
    let e = kb().explain("telemetry.gadget.co.uk", &[], Some("Belkin"));
    assert_eq!(e.registrable.as_deref(), Some("gadget.co.uk"));
    assert_eq!(e.category, Category::Other);
    assert_eq!(e.expected, None);
    assert!(e.description.contains("gadget.co.uk"));
    assert_eq!(
        kb().explain("printer.local", &[], None).source,
        "local-name"
    );
}

#[test]
fn addresses_without_names() {
    let e = kb().explain_address("8.8.8.8".parse().unwrap());
    assert_eq!(e.category, Category::Dns);
    assert_eq!(e.organisation.as_deref(), Some("Google Public DNS"));
    let e = kb().explain_address("2606:4700:4700::1111".parse().unwrap());
    assert_eq!(e.category, Category::Dns);
    let e = kb().explain_address("104.17.1.1".parse().unwrap());
    assert_eq!(e.organisation.as_deref(), Some("Cloudflare"));
    let e = kb().explain_address("203.0.113.9".parse().unwrap());
    assert_eq!(e.organisation, None);
    assert!(e.description.contains("no name seen"));
}

#[test]
fn knowledge_base_size_and_completeness() {
    let orgs = kb().organisations();
    assert!(orgs.len() >= 150, "{} organisations", orgs.len());
    let mut domains = HashSet::new();
    let mut ids = HashSet::new();
    for o in orgs {
        assert!(ids.insert(o.id.as_str()), "id {} twice", o.id);
        assert!(!o.description.trim().is_empty() && !o.name.trim().is_empty());
        assert!(o.description.ends_with('.'), "{}: {}", o.id, o.description);
        for d in &o.domains {
            assert!(domains.insert(d.as_str()), "{d} listed twice");
            assert!(valid_domain(d), "{d}");
        }
    }
    assert!(domains.len() >= 500, "{} domains", domains.len());
    assert_eq!(kb().domain_count(), domains.len());
    // Every category but `other` is used.
    for c in Category::ALL {
        assert!(orgs.iter().any(|o| o.category == c), "{c:?} unused");
    }
}

#[test]
fn bad_data_is_refused() {
    let twice = r#"
[[organisation]]
id = "a"
name = "A"
category = "dns"
description = "A."
domains = ["a.example"]
[[organisation]]
id = "b"
name = "B"
category = "dns"
description = "B."
domains = ["A.example."]
"#;
    let err = KnowledgeBase::from_toml(twice).unwrap_err();
    assert!(err.0.contains("listed by both"), "{err}");
    let bad_category = twice.replacen("\"dns\"", "\"spying\"", 1);
    assert!(KnowledgeBase::from_toml(&bad_category).is_err());
    let no_desc = twice.replacen("description = \"A.\"", "description = \" \"", 1);
    assert!(KnowledgeBase::from_toml(&no_desc).is_err());
}
