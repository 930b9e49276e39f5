//! `bgd prune`: this app's old release images go; the live, parked, recent and used ones
//! stay; `--plan` only says; the history records it; `prune: auto` runs it after a deploy.

mod common;

use common::*;
use std::process::Command;

/// Tags of the demo images of this test's own (so removing them touches no other test).
struct Tags(Vec<String>);

impl Drop for Tags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = Command::new("docker").args(["rmi", t]).output();
        }
    }
}

/// Tags `tag` as demo image `v{n}` with a label of this test's own: an image ID no other
/// test's container uses.
fn own_image(tag: &str, n: usize) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker build");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM bgd-demo:v{n}\nLABEL bgd.test.image={tag}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn present(image: &str) -> bool {
    !docker(&["images", "-q", image]).trim().is_empty()
}

#[test]
fn prune_keeps_live_parked_recent_and_used_images_and_removes_the_rest() {
    let t = TestApp::new("prune");
    let tags = Tags(
        (1..=4)
            .map(|n| {
                let tag = format!("{}-web:{n}", t.app);
                own_image(&tag, n);
                tag
            })
            .collect(),
    );
    let img = |n: usize| tags.0[n - 1].as_str();
    t.write(&t.config().set("retain", 2));
    for n in 1..=4 {
        let d = t.bgd(&["deploy", img(n)]);
        assert_eq!(d.code, 0, "{d:?}");
    }
    assert_eq!(t.live_version(), "v4");
    // another container holds release 1's image: it must stay
    let holder = format!("{}-holder", t.app);
    docker(&[
        "create",
        "--name",
        &holder,
        "--label",
        &format!("bgd.app={}", t.app),
        img(1),
    ]);

    // --plan: release 2 would go (older than the last 2; 4 live, 3 parked), 1 is in use
    let plan = t.bgd(&["--json", "prune", "--plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let r = plan.result();
    assert_eq!(r["would_remove"], serde_json::json!([img(2)]), "{r}");
    let kept: Vec<(String, String)> = r["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["image"].as_str().unwrap().to_string(),
                k["why"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        kept[0].0 == img(4) && kept[0].1.contains("live"),
        "{kept:?}"
    );
    assert!(
        kept[1].0 == img(3) && kept[1].1.contains("parked"),
        "{kept:?}"
    );
    assert!(
        kept[2].0 == img(1) && kept[2].1.contains(&holder),
        "{kept:?}"
    );
    assert!(present(img(2)), "--plan removed something");

    // prune: 2 goes, the rest stays; the history says so
    let p = t.bgd(&["prune"]);
    assert_eq!(p.code, 0, "{p:?}");
    assert!(
        p.stdout
            .contains(&format!("removed 1 image(s) of {}", t.app)),
        "{p:?}"
    );
    assert!(!present(img(2)));
    for n in [1, 3, 4] {
        assert!(present(img(n)), "{} is gone", img(n));
    }
    let h = t.bgd(&["--json", "history"]).result();
    let last = h["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["command"], "prune", "{last}");
    assert!(last["message"].as_str().unwrap().contains(img(2)), "{last}");
    // nothing lost: rollback to the parked release still works
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(t.live_version(), "v3");
    let again = t.bgd(&["prune"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing to prune"), "{again:?}");

    // prune: auto runs after each successful deploy: with 1 live (v2 tag back) and 3 parked...
    docker(&["rm", "-f", &holder]);
    own_image(img(2), 2);
    t.write(&t.config().set("retain", 1).set("prune", "auto"));
    let d = t.bgd(&["--json", "deploy", img(2)]);
    assert_eq!(d.code, 0, "{d:?}");
    let pruned = d.result()["pruned"].clone();
    // live 2, parked 3 (the previous live); 1 and 4 are neither, nor the last release
    let mut got: Vec<String> = serde_json::from_value(pruned).unwrap();
    got.sort();
    let mut want = vec![img(1).to_string(), img(4).to_string()];
    want.sort();
    assert_eq!(got, want);
    assert!(present(img(2)) && present(img(3)));
    assert_eq!(t.live_version(), "v2");
    let rb = t.bgd(&["rollback"]);
    assert_eq!(rb.code, 0, "{rb:?}");
    assert_eq!(t.live_version(), "v3");

    // a bad retain is a config error
    t.write(&t.config().set("retain", 0));
    let bad = t.bgd(&["prune", "--plan"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}
