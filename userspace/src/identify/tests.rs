//! Identification tests: every knowledge rule fires on the evidence it is
//! about, and whole devices come out right.

use super::*;
use crate::dissect::mdns::TxtEntry;

/// A MAC outside every block in oui.toml (universally administered).
const NO_OUI: Mac = Mac([0x00, 0x00, 0x5e, 0x00, 0x53, 0x01]);

fn has_signal(id: &Identity, source: &str, value: &str, r: &Rule) -> bool {
    id.evidence.iter().any(|s| {
        s.source == source
            && s.value == value
            && s.weight == r.weight
            && r.kind.is_none_or(|k| s.suggests.contains(k.label()))
            && r.vendor
                .as_ref()
                .is_none_or(|v| s.suggests.contains(v.as_str()))
    })
}

/// A value the rule matches: the pattern itself, dressed up for the mode.
fn sample(r: &Rule) -> String {
    match r.how {
        rules::How::Equals => r.pattern.clone(),
        rules::How::Prefix => format!("{}x1", r.pattern),
        rules::How::Suffix => format!("x1{}", r.pattern),
        rules::How::Contains => format!("x{}y", r.pattern),
        rules::How::Domain => format!("api.{}", r.pattern),
    }
}

fn check_all(rules: &[Rule], source: &str, put: impl Fn(&mut Evidence, String)) {
    assert!(!rules.is_empty(), "{source}: no rules");
    for r in rules {
        let value = sample(r);
        assert!(r.matches(&value), "{r:?}");
        let mut ev = Evidence::default();
        put(&mut ev, value.clone());
        let id = identify(NO_OUI, &ev);
        assert!(
            has_signal(&id, source, &value, r),
            "{source} rule {r:?} did not fire: {id:#?}"
        );
        if let Some(kind) = r.kind {
            assert_ne!(id.kind, Kind::Unknown, "{r:?}");
            // The rule's kind wins or is at least among the signals' suggestions.
            assert!(
                id.evidence
                    .iter()
                    .any(|s| s.suggests.contains(kind.label()))
            );
        }
    }
}

#[test]
fn every_hostname_rule_fires() {
    check_all(&knowledge().names.hostname, "dhcp hostname", |ev, v| {
        ev.dhcp_hostnames.push(v)
    });
}

#[test]
fn every_model_rule_fires() {
    check_all(&knowledge().names.model, "upnp model", |ev, v| {
        ev.upnp = Some(upnp::UpnpDescription {
            model_name: Some(v),
            ..Default::default()
        })
    });
}

#[test]
fn every_mdns_service_rule_fires() {
    check_all(&knowledge().mdns.service, "mdns service", |ev, v| {
        ev.mdns_services.push(v)
    });
}

#[test]
fn every_mdns_txt_rule_fires() {
    for r in &knowledge().mdns.txt {
        let mut ev = Evidence::default();
        ev.mdns_txt.push(TxtEntry {
            service: "_ipp._tcp".into(),
            key: r.key.clone(),
            value: "Acme Q1".into(),
        });
        let id = identify(NO_OUI, &ev);
        match r.field {
            TxtField::Vendor => assert_eq!(id.vendor.as_deref(), Some("Acme Q1"), "{r:?}"),
            TxtField::Model => assert_eq!(id.model.as_deref(), Some("Acme Q1"), "{r:?}"),
        }
        assert_eq!(id.evidence[0].value, format!("{}=Acme Q1", r.key));
    }
}

#[test]
fn every_ssdp_rule_fires() {
    check_all(&knowledge().ssdp.device_type, "ssdp type", |ev, v| {
        ev.ssdp_types.push(v)
    });
    check_all(&knowledge().ssdp.server, "ssdp server", |ev, v| {
        ev.ssdp_servers.push(v)
    });
}

#[test]
fn every_user_agent_rule_fires() {
    check_all(
        &knowledge().user_agents.user_agent,
        "user agent",
        |ev, v| ev.user_agents.push(v),
    );
}

#[test]
fn every_dhcp_rule_fires() {
    check_all(
        &knowledge().dhcp.vendor_class,
        "dhcp vendor class",
        |ev, v| ev.dhcp_vendor_classes.push(v),
    );
    for r in &knowledge().dhcp.fingerprint {
        let mut prl = r.starts_with.clone();
        prl.extend(r.contains.iter().filter(|o| !r.starts_with.contains(o)));
        let fp: Vec<String> = prl.iter().map(u8::to_string).collect();
        let mut ev = Evidence::default();
        ev.dhcp_fingerprints.push(fp.join(","));
        let id = identify(NO_OUI, &ev);
        assert!(
            id.evidence.iter().any(|s| s.source == "dhcp fingerprint"),
            "{r:?}"
        );
        assert_eq!(id.vendor, r.vendor, "{r:?}");
        // The shape without its first option does not match.
        assert!(!r.matches(&prl[1..]), "{r:?}");
    }
}

#[test]
fn every_domain_rule_fires() {
    check_all(&knowledge().domains.domain, "contacted domain", |ev, v| {
        ev.note_domain(&v)
    });
    // A look-alike does not.
    let mut ev = Evidence::default();
    ev.note_domain("notxbcs.net");
    assert!(identify(NO_OUI, &ev).evidence.is_empty());
}

#[test]
fn every_vendor_alias_normalises() {
    for v in &knowledge().vendors.vendor {
        for a in &v.aliases {
            assert_eq!(
                knowledge().vendor_name(&format!("{} Co.", a.to_uppercase())),
                Some(v.name.as_str()),
                "{a}"
            );
        }
    }
}

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

#[test]
fn nothing_known_is_unknown() {
    let id = identify(NO_OUI, &Evidence::default());
    assert_eq!(
        (id.kind, id.vendor, id.confidence),
        (Kind::Unknown, None, 0.0)
    );
}

#[test]
fn chip_maker_is_not_the_brand_when_better_evidence_exists() {
    // Espressif module inside a Wemo plug.
    let esp = mac("24:0a:c4:12:34:56");
    let id = identify(esp, &Evidence::default());
    assert_eq!(id.vendor.as_deref(), Some("Espressif (Wi-Fi module)"));
    assert_eq!(id.kind, Kind::Unknown);
    let mut ev = Evidence::default();
    ev.dhcp_hostnames.push("wemo-plug-1A2B".into());
    ev.ssdp_types.push("urn:Belkin:device:controllee:1".into());
    ev.absorb_upnp(&upnp::UpnpDescription {
        manufacturer: Some("Belkin International Inc.".into()),
        model_name: Some("Socket".into()),
        model_number: Some("1.0".into()),
        ..Default::default()
    });
    ev.note_domain("api.xbcs.net");
    let id = identify(esp, &ev);
    assert_eq!(id.kind, Kind::Plug);
    assert_eq!(id.vendor.as_deref(), Some("Belkin"));
    // The device's own words beat the knowledge base's product name.
    assert_eq!(id.model.as_deref(), Some("Socket 1.0"));
    assert!(id.confidence > 0.9, "{id:?}");
    // The module maker is still listed as evidence.
    assert!(
        id.evidence
            .iter()
            .any(|s| s.source == "oui" && s.suggests.contains("Espressif"))
    );
}

#[test]
fn randomised_phone_says_so_and_is_a_phone() {
    let m = mac("da:a1:19:00:00:01");
    let mut ev = Evidence::default();
    ev.dhcp_hostnames.push("Janes-iPhone".into());
    ev.mdns_services.push("_apple-mobdev2._tcp".into());
    let id = identify(m, &ev);
    assert_eq!(id.kind, Kind::Phone);
    assert_eq!(id.vendor.as_deref(), Some("Apple"));
    let oui = id.evidence.iter().find(|s| s.source == "oui").unwrap();
    assert!(oui.suggests.contains("randomised"));
}

#[test]
fn printer_from_txt_records() {
    let mut ev = Evidence::default();
    ev.mdns_services.push("_ipp._tcp".into());
    for (k, v) in [
        ("usb_MFG", "HP"),
        ("usb_MDL", "LaserJet Pro M404"),
        ("ty", "HP LaserJet Pro M404"),
    ] {
        ev.mdns_txt.push(TxtEntry {
            service: "_ipp._tcp".into(),
            key: k.into(),
            value: v.into(),
        });
    }
    let id = identify(NO_OUI, &ev);
    assert_eq!(id.kind, Kind::Printer);
    assert_eq!(id.vendor.as_deref(), Some("HP"));
    assert!(id.model.as_deref().unwrap().contains("LaserJet Pro M404"));
}

#[test]
fn evidence_from_observations_is_bounded_and_dedups() {
    use crate::dissect::http::HttpRequest;
    let mut ev = Evidence::default();
    for i in 0..100 {
        let obs = Observation::HttpRequest(HttpRequest {
            mac: NO_OUI,
            ip: None,
            method: "GET".into(),
            host: Some(format!("h{i}.example.com:8080")),
            user_agent: Some(format!("agent {}", i % 20)),
        });
        ev.absorb(&obs);
        ev.absorb(&obs);
    }
    assert_eq!(ev.user_agents.len(), MAX_ITEMS);
    assert_eq!(ev.domains.len(), 100);
    assert_eq!(ev.domains[0], "h0.example.com");
    for i in 0..1000 {
        ev.note_domain(&format!("d{i}.example.org"));
    }
    assert_eq!(ev.domains.len(), MAX_DOMAINS);
    assert!(ev.dropped > 0);
    let json = serde_json::to_string(&ev).unwrap();
    assert!(json.len() < 64 * 1024);
    assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), ev);
}

#[test]
fn searches_do_not_count_as_what_a_device_is() {
    use crate::dissect::ssdp::SsdpMessage;
    let mut ev = Evidence::default();
    ev.absorb(&Observation::Ssdp(SsdpMessage {
        mac: NO_OUI,
        ip: None,
        message: SsdpKind::Search,
        server: None,
        usn: None,
        nt: Some("roku:ecp".into()),
        nts: None,
        location: None,
        user_agent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".into()),
    }));
    let id = identify(NO_OUI, &ev);
    assert_eq!(id.kind, Kind::Phone);
    assert!(ev.ssdp_types.is_empty());
}

#[test]
fn observations_serialise_with_their_kind_tag() {
    use crate::dissect::dhcp::DhcpRequest;
    let obs = Observation::Dhcp(DhcpRequest {
        mac: NO_OUI,
        ip: Some("192.0.2.5".parse().unwrap()),
        message_type: Some(3),
        hostname: Some("<b>cam</b>".into()),
        param_request_list: vec![1, 3, 6],
        vendor_class: None,
        client_id: None,
        requested_ip: None,
    });
    let json = serde_json::to_value(&obs).unwrap();
    assert_eq!(json["kind"], "dhcp");
    assert_eq!(json["mac"], "00:00:5e:00:53:01");
    assert_eq!(json["hostname"], "<b>cam</b>");
    assert_eq!(serde_json::from_value::<Observation>(json).unwrap(), obs);
    let id = identify(NO_OUI, &Evidence::default());
    let json = serde_json::to_value(&id).unwrap();
    assert_eq!(json["kind"], "unknown");
}
