use std::collections::BTreeSet;
use std::net::IpAddr;

use super::*;
use crate::dissect::Mac;
use crate::identify::{Evidence, Identity, identify};
use crate::store::FlowRecord;

/// Labels as owners type them (collected from forum posts, app screenshots
/// and the original study's free-text labels) and the product each names.
const VARIANTS: &[(&str, &str)] = &[
    ("amazon alexa", "amazon_echo"),
    ("Alexa", "amazon_echo"),
    ("Amazon Echo", "amazon_echo"),
    ("echo (kitchen)", "amazon_echo"),
    ("Alexia", "amazon_echo"),
    ("amazon eco", "amazon_echo"),
    ("Echo dot 3rd gen", "amazon_echo_dot"),
    ("echo dot", "amazon_echo_dot"),
    ("EchoDot", "amazon_echo_dot"),
    ("Amazon Echo Dot (4th Gen)", "amazon_echo_dot"),
    ("echo-dot bedroom", "amazon_echo_dot"),
    ("eco dot", "amazon_echo_dot"),
    ("Echo Show 8", "amazon_echo_show"),
    ("echo shwo", "amazon_echo_show"),
    ("Fire TV Stick 4K", "amazon_fire_tv"),
    ("firestick", "amazon_fire_tv"),
    ("Amazon Fire Stick", "amazon_fire_tv"),
    ("fire stik", "amazon_fire_tv"),
    ("Kindle Fire HD", "amazon_fire_tablet"),
    ("Google Home Mini", "google_nest_mini"),
    ("nest mini", "google_nest_mini"),
    ("googel home mini", "google_nest_mini"),
    ("Google Nest Hub", "google_nest_hub"),
    ("nest hub max", "google_nest_hub"),
    ("Google Home", "google_home"),
    ("gogle home", "google_home"),
    ("Nest Audio", "google_home"),
    ("Nest Thermostat", "google_nest_thermostat"),
    ("nest learning thermostat 3rd gen", "google_nest_thermostat"),
    ("nest termostat", "google_nest_thermostat"),
    ("Nest Cam", "google_nest_cam"),
    ("dropcam", "google_nest_cam"),
    ("Chromecast", "google_chromecast"),
    ("chromcast", "google_chromecast"),
    ("Google Chromecast Ultra", "google_chromecast"),
    ("chrome-cast", "google_chromecast"),
    ("Ring Doorbell", "ring_doorbell"),
    ("ring video doorbell pro", "ring_doorbell"),
    ("ring door bell", "ring_doorbell"),
    ("Ring doorbel", "ring_doorbell"),
    ("ring cam", "ring_camera"),
    ("Ring Stick Up Cam", "ring_camera"),
    ("Wyze Cam", "wyze_cam"),
    ("wyze cam v3", "wyze_cam"),
    ("wise cam", "wyze_cam"),
    ("WyzeCam Pan", "wyze_cam"),
    ("hue bridge", "philips_hue_bridge"),
    ("philps hue", "philips_hue_bridge"),
    ("Phillips Hue Bridge", "philips_hue_bridge"),
    ("Philips Hue", "philips_hue_bridge"),
    ("PhilipsHue", "philips_hue_bridge"),
    ("hue brige", "philips_hue_bridge"),
    ("Philips Hue bulbs", "philips_hue_bridge"),
    ("WiZ bulb", "wiz_bulb"),
    ("LIFX", "lifx_bulb"),
    ("lifx light", "lifx_bulb"),
    ("wemo", "belkin_wemo_plug"),
    ("WeMo Switch", "belkin_wemo_plug"),
    ("Belkin WeMo Mini", "belkin_wemo_plug"),
    ("weemo plug", "belkin_wemo_plug"),
    ("Wemo Insight Smart Plug", "belkin_wemo_plug"),
    ("kasa plug", "tplink_kasa_plug"),
    ("TP-Link Kasa Smart Plug", "tplink_kasa_plug"),
    ("HS105", "tplink_kasa_plug"),
    ("tp link smart plug", "tplink_kasa_plug"),
    ("kassa plug", "tplink_kasa_plug"),
    ("Tapo P100", "tplink_tapo_plug"),
    ("tapo plug", "tplink_tapo_plug"),
    ("Tuya smart plug", "tuya_plug"),
    ("Smart Life plug", "tuya_plug"),
    ("meross plug", "meross_plug"),
    ("Shelly 1", "shelly_relay"),
    ("shelly relay", "shelly_relay"),
    ("shelley relay", "shelly_relay"),
    ("Sonos One", "sonos_one"),
    ("sonos", "sonos_one"),
    ("Sonos One SL", "sonos_one"),
    ("sonnos", "sonos_one"),
    ("Roku", "roku_stick"),
    ("roku streaming stick+", "roku_stick"),
    ("Roku Express", "roku_stick"),
    ("rokku", "roku_stick"),
    ("Apple TV", "apple_tv"),
    ("AppleTV 4K", "apple_tv"),
    ("appel tv", "apple_tv"),
    ("Samsung TV", "samsung_tv"),
    ("samsung smart tv", "samsung_tv"),
    ("Samsung 55\" QLED", "samsung_tv"),
    ("samsun tv", "samsung_tv"),
    ("LG TV", "lg_tv"),
    ("LG OLED", "lg_tv"),
    ("lg webos tv", "lg_tv"),
    ("roomba", "irobot_roomba"),
    ("iRobot Roomba 675", "irobot_roomba"),
    ("rumba", "irobot_roomba"),
    ("Ecobee", "ecobee_thermostat"),
    ("ecobee3 lite", "ecobee_thermostat"),
    ("ecobe", "ecobee_thermostat"),
    ("August Smart Lock", "august_lock"),
    ("august lock", "august_lock"),
    ("agust lock", "august_lock"),
    ("Arlo Pro", "arlo_camera"),
    ("arlo camera", "arlo_camera"),
    ("arlow camera", "arlo_camera"),
    ("eufyCam", "eufy_camera"),
    ("Eufy camera", "eufy_camera"),
    ("Xiaomi vacuum", "xiaomi_vacuum"),
    ("Mi Robot Vacuum", "xiaomi_vacuum"),
    ("xiomi vacuum", "xiaomi_vacuum"),
    ("Roborock", "xiaomi_vacuum"),
    ("HP printer", "hp_printer"),
    ("HP OfficeJet Pro", "hp_printer"),
    ("deskjet", "hp_printer"),
    ("Brother printer", "brother_printer"),
    ("brother laser printer", "brother_printer"),
    ("Canon Pixma", "canon_printer"),
    ("cannon printer", "canon_printer"),
    ("Epson printer", "epson_printer"),
    ("epson ecotank", "epson_printer"),
    ("espon printer", "epson_printer"),
    ("Nintendo Switch", "nintendo_switch"),
    ("nintendo swich", "nintendo_switch"),
    ("Switch Lite", "nintendo_switch"),
    ("PS4", "sony_playstation"),
    ("PlayStation 5", "sony_playstation"),
    ("playstaion", "sony_playstation"),
    ("Xbox One", "microsoft_xbox"),
    ("xbox series x", "microsoft_xbox"),
    ("X Box", "microsoft_xbox"),
    ("iPhone", "apple_iphone"),
    ("My iPhone 13", "apple_iphone"),
    ("iphon", "apple_iphone"),
    ("Android phone", "android_phone"),
    ("andriod phone", "android_phone"),
    ("Pixel 7", "google_pixel"),
    ("Samsung Galaxy S21", "samsung_galaxy"),
    ("iPad", "apple_ipad"),
    ("ipad pro 11", "apple_ipad"),
    ("i pad", "apple_ipad"),
    ("MacBook Pro", "apple_macbook"),
    ("mackbook air", "apple_macbook"),
    ("HomePod mini", "apple_homepod"),
    ("Withings scale", "withings_scale"),
    ("withings body+", "withings_scale"),
    ("withing scale", "withings_scale"),
    ("myQ garage", "chamberlain_myq"),
    ("Raspberry Pi 4", "raspberry_pi"),
    ("rasberry pi", "raspberry_pi"),
];

/// Texts that name no product: they must stay free text.
const NO_MATCH: &[&str] = &[
    "my kitchen thing",
    "<img src=x onerror=alert(1)>",
    "",
    "   ",
    "living room",
    "Dad's laptop",
    "my brother's laptop",
    "ring light",
    "smart fan",
    "thing in the garage",
    "unknown device 3",
    "'; DROP TABLE devices; --",
    "\u{202e}olleh",
    "Σ καφετιέρα",
    "the blue box under the stairs",
];

#[test]
fn catalogue_parses_with_enough_products() {
    let c = Catalogue::builtin();
    assert!(c.products().len() >= 30, "{} products", c.products().len());
    let ids: BTreeSet<&str> = c.products().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), c.products().len());
}

#[test]
fn every_alias_and_misspelling_leads_back_to_its_product() {
    let c = Catalogue::builtin();
    for p in c.products() {
        for a in p.aliases.iter().chain(&p.misspellings) {
            let n = c.normalise(a);
            assert_eq!(
                n.entry.as_ref().map(|e| e.id.as_str()),
                Some(p.id.as_str()),
                "`{a}` of {} normalised to {:?}",
                p.id,
                n.entry.as_ref().map(|e| &e.id)
            );
        }
    }
}

#[test]
fn real_world_variants_normalise_to_their_product() {
    let products: BTreeSet<&str> = VARIANTS.iter().map(|(_, id)| *id).collect();
    assert!(VARIANTS.len() >= 100, "{} variants", VARIANTS.len());
    assert!(products.len() >= 30, "{} products", products.len());
    let mut wrong = Vec::new();
    for (typed, id) in VARIANTS {
        assert!(
            Catalogue::builtin().product(id).is_some(),
            "{id} not in catalogue"
        );
        let n = normalise(typed);
        assert_eq!(n.typed, *typed, "the typed text is kept");
        if n.entry.as_ref().map(|e| e.id.as_str()) != Some(*id) {
            wrong.push(format!(
                "{typed:?} → {:?} ({:.2}), want {id}",
                n.entry.map(|e| e.id),
                n.score
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn texts_naming_no_product_stay_free_text() {
    for t in NO_MATCH {
        let n = normalise(t);
        assert!(
            n.entry.is_none(),
            "{t:?} matched {:?} ({:.2})",
            n.entry.map(|e| e.id),
            n.score
        );
        assert_eq!(n.score, 0.0);
        assert_eq!(&n.typed, t);
    }
}

#[test]
fn free_text_keeps_its_kind_and_vendor() {
    assert_eq!(normalise("smart fan").kind, Some(Kind::Appliance));
    assert_eq!(normalise("bedroom lamp").kind, Some(Kind::Light));
    assert_eq!(normalise("light switch").kind, Some(Kind::Plug));
    assert_eq!(normalise("living room").kind, None);
    let n = normalise("some philips thing");
    assert!(n.entry.is_none());
    assert_eq!(n.vendor.as_deref(), Some("Philips Hue"));
}

#[test]
fn hostile_and_huge_texts_are_bounded() {
    let huge = "echo ".repeat(100_000);
    let n = normalise(&huge);
    assert_eq!(n.typed.len(), huge.len());
    // Only the first MAX_TEXT characters count: "echo" many times over.
    assert_eq!(n.entry.map(|e| e.id), Some("amazon_echo".to_string()));
    let junk: String = (0..5000u32).filter_map(char::from_u32).collect::<String>();
    let _ = normalise(&junk);
}

#[test]
fn search_ranks_the_closest_first() {
    let r = search("echo", 5);
    assert_eq!(r[0].id, "amazon_echo");
    let r = search("hue", 3);
    assert_eq!(r[0].id, "philips_hue_bridge");
    let r = search("printer", 10);
    assert!(r.is_empty(), "a kind alone names no product: {r:?}");
    let r = search("nest", 10);
    assert!(r.iter().any(|p| p.id == "google_nest_thermostat"));
    assert!(search("kasa", 1).len() == 1);
}

// ---------------------------------------------------------------- devices

fn mac(s: &str) -> Mac {
    s.parse().unwrap()
}

/// A TP-Link Kasa plug as the identification sees it: TP-Link OUI, its
/// DHCP name and its cloud.
fn kasa_plug() -> Identity {
    let ev = Evidence {
        dhcp_hostnames: vec!["HS105".into()],
        domains: vec!["n-devs.tplinkcloud.com".into()],
        ..Default::default()
    };
    identify(mac("00:0a:eb:12:34:56"), &ev)
}

/// A Belkin Wemo plug: OUI, DHCP name, UPnP-ish cloud.
fn wemo_plug() -> Identity {
    let ev = Evidence {
        dhcp_hostnames: vec!["wemo-plug-1A2B".into()],
        domains: vec!["api.xbcs.net".into()],
        ..Default::default()
    };
    identify(mac("14:91:82:12:34:56"), &ev)
}

/// An Android phone: randomised MAC, Android host name.
fn android_phone() -> Identity {
    let ev = Evidence {
        dhcp_hostnames: vec!["android-5f2a9c1b".into()],
        dhcp_vendor_classes: vec!["android-dhcp-13".into()],
        domains: vec![
            "play.googleapis.com".into(),
            "connectivitycheck.gstatic.com".into(),
        ],
        ..Default::default()
    };
    identify(mac("da:a1:19:00:00:01"), &ev)
}

fn record(name: &str, bytes: u64) -> FlowRecord {
    FlowRecord {
        device_ip: Some("192.0.2.20".parse::<IpAddr>().unwrap()),
        remote_ip: Some("203.0.113.9".parse().unwrap()),
        proto: 6,
        remote_port: 443,
        bytes_up: bytes / 2,
        bytes_down: bytes - bytes / 2,
        packets_up: 3,
        packets_down: 3,
        flows: 1,
        name: Some(name.into()),
        name_source: Some("dns".into()),
    }
}

fn parties(names: &[&str]) -> Vec<PartySummary> {
    let recs: Vec<FlowRecord> = names.iter().map(|n| record(n, 4000)).collect();
    parties_of(&recs)
}

const PHONE_TRAFFIC: &[&str] = &[
    "play.googleapis.com",
    "connectivitycheck.gstatic.com",
    "doubleclick.net",
    "google-analytics.com",
    "amazon-adsystem.com",
    "sb.scorecardresearch.com",
    "ib.adnxs.com",
    "static.criteo.net",
];

#[test]
fn suggestions_follow_the_identification() {
    // Vendor and kind: TP-Link's plugs first, each saying why.
    let s = suggest(&kasa_plug(), 3);
    let ids: Vec<&str> = s.iter().map(|x| x.product.id.as_str()).collect();
    assert_eq!(ids[..2], ["tplink_kasa_plug", "tplink_tapo_plug"], "{s:#?}");
    assert!(s[0].because.iter().any(|b| b.contains("TP-Link")));
    assert!(s[0].because.iter().any(|b| b.contains("plug/switch")));
    // A model the device reported picks the product among its vendor's.
    let mut with_model = kasa_plug();
    with_model.model = Some("Tapo P110".into());
    let s = suggest(&with_model, 3);
    assert_eq!(s[0].product.id, "tplink_tapo_plug", "{s:#?}");
    assert!(s[0].because.iter().any(|b| b.contains("model `Tapo P110`")));
    assert!(s[0].score > s[1].score);
    let s = suggest(&wemo_plug(), 3);
    assert_eq!(s[0].product.id, "belkin_wemo_plug", "{s:#?}");
    assert!(s[0].because.iter().any(|b| b.contains("wemo-plug-1A2B")));
    let s = suggest(&android_phone(), 3);
    assert!(s.iter().any(|x| x.product.id == "android_phone"), "{s:#?}");
    assert!(s.iter().all(|x| x.product.kind == Kind::Phone), "{s:#?}");
    // Nothing known: nothing suggested.
    let blank = identify(mac("02:00:5e:00:53:99"), &Evidence::default());
    assert!(suggest(&blank, 5).is_empty());
}

#[test]
fn a_smart_fan_talking_like_a_phone_is_flagged_with_its_evidence() {
    let p = parties(PHONE_TRAFFIC);
    let w = check(&normalise("smart fan"), &android_phone(), &p);
    let traffic = w
        .iter()
        .find(|w| w.code == "traffic_contradicts_kind")
        .expect("traffic warning");
    assert!(traffic.text.contains("Google Play"), "{}", traffic.text);
    assert!(traffic.text.contains("advertising"), "{}", traffic.text);
    assert!(traffic.evidence.iter().any(|e| e.contains("Criteo")));
    let kind = w
        .iter()
        .find(|w| w.code == "identity_contradicts_kind")
        .expect("identity warning");
    assert!(kind.text.contains("phone"), "{}", kind.text);
    assert!(
        kind.evidence.iter().any(|e| e.contains("android-5f2a9c1b")),
        "{:?}",
        kind.evidence
    );
    // The same traffic under its right label raises nothing.
    assert_eq!(
        check(&normalise("Android phone"), &android_phone(), &p),
        vec![]
    );
    assert_eq!(check(&normalise("Pixel 7"), &android_phone(), &p), vec![]);
}

#[test]
fn a_plug_with_few_advertisers_is_not_flagged() {
    let p = parties(&["n-devs.tplinkcloud.com", "doubleclick.net", "pool.ntp.org"]);
    assert_eq!(check(&normalise("kasa plug"), &kasa_plug(), &p), vec![]);
    assert_eq!(check(&normalise("HS105"), &kasa_plug(), &p), vec![]);
    assert_eq!(
        check(&normalise("desk lamp plug"), &kasa_plug(), &p),
        vec![]
    );
}

#[test]
fn a_label_naming_another_vendor_is_flagged() {
    let p = parties(&["n-devs.tplinkcloud.com", "pool.ntp.org"]);
    let w = check(&normalise("Philips Hue"), &kasa_plug(), &p);
    let v = w
        .iter()
        .find(|w| w.code == "vendor_not_seen")
        .unwrap_or_else(|| panic!("{w:#?}"));
    assert!(v.text.contains("TP-Link"), "{}", v.text);
    assert!(v.text.contains("Philips Hue"), "{}", v.text);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.contains("vendor cloud: TP-Link"))
    );
    // A free-text label with a vendor in it is checked too.
    let w = check(&normalise("philips lamp"), &kasa_plug(), &p);
    assert!(w.iter().any(|w| w.code == "vendor_not_seen"), "{w:#?}");
    // The right vendor, or a sister brand, raises nothing.
    assert_eq!(check(&normalise("tapo plug"), &kasa_plug(), &p), vec![]);
    let hue = identify(
        mac("00:17:88:12:34:56"),
        &Evidence {
            domains: vec!["diag.meethue.com".into()],
            ..Default::default()
        },
    );
    let hp = parties(&["diag.meethue.com"]);
    assert_eq!(check(&normalise("philps hue"), &hue, &hp), vec![]);
    assert_eq!(check(&normalise("my hue"), &hue, &hp), vec![]);
}

#[test]
fn without_any_vendor_cloud_nothing_is_claimed() {
    let blank = identify(mac("02:00:5e:00:53:99"), &Evidence::default());
    let p = parties(&["pool.ntp.org"]);
    assert_eq!(check(&normalise("Philips Hue"), &blank, &p), vec![]);
    assert_eq!(check(&normalise("my kitchen thing"), &blank, &p), vec![]);
}
