//! Every verdict says why, in a few words.

mod common;

#[allow(unused_imports)]
use ckpt_policy::*;
#[allow(unused_imports)]
use common::{cx, listing, with_loss};

#[allow(dead_code)]
fn reasons(p: &dyn PreservationPolicy, cs: &[ckpt_core::CheckpointInfo]) -> Vec<(bool, String)> {
    p.should_preserve(cs, &cx())
        .into_iter()
        .map(|v| (v.keep, v.reason))
        .collect()
}

#[allow(dead_code)]
fn k(s: &str) -> (bool, String) {
    (true, s.to_string())
}

#[allow(dead_code)]
fn d(s: &str) -> (bool, String) {
    (false, s.to_string())
}

#[test]
fn preserve_all_and_empty_any() {
    let cs = listing(&[0, 1]);
    assert_eq!(
        reasons(&PreserveAll {}, &cs),
        vec![k("preserve all"), k("preserve all")]
    );
    let empty = AnyPreservationPolicy::default();
    assert_eq!(
        reasons(&empty, &cs)[0],
        k("AnyPreservationPolicy without policies keeps all")
    );
}

#[cfg(feature = "latest")]
#[test]
fn latest_n() {
    let cs = listing(&[0, 1, 2, 3]);
    assert_eq!(
        reasons(&LatestN::new(Some(3)), &cs),
        vec![
            d("not among newest 3"),
            k("newest 3"),
            k("newest 3"),
            k("newest 3")
        ]
    );
    assert_eq!(
        reasons(&LatestN::new(None), &cs)[0],
        k("LatestN without n keeps all")
    );
}

#[cfg(feature = "interval")]
#[test]
fn every_n_steps() {
    let cs = listing(&[0, 500, 1000, 2000]);
    assert_eq!(
        reasons(&EveryNSteps::new(1000), &cs),
        vec![
            k("step % 1000 == 0"),
            d("step % 1000 != 0"),
            k("step % 1000 == 0"),
            k("step % 1000 == 0")
        ]
    );
    let p = EveryNSteps {
        interval_steps: 3,
        exact_interval: false,
        max_to_keep: Some(2),
    };
    assert_eq!(
        reasons(&p, &listing(&[0, 1, 4, 9])),
        vec![
            d("first checkpoint, but not among the last 2 kept (max_to_keep)"),
            d("only 1 < 3 steps after kept step 0"),
            k("4 >= 3 steps after kept step 0"),
            k("5 >= 3 steps after kept step 4"),
        ]
    );
    assert_eq!(
        reasons(&EveryNStepsClosest::new(3, None), &listing(&[2, 4, 8, 10])),
        vec![
            d("step 4 is as close to 3 and later"),
            k("closest to 3"),
            d("step 10 is as close to 9 and later"),
            k("closest to 9"),
        ]
    );
    assert_eq!(
        reasons(&EveryNStepsClosest::new(3, None), &listing(&[9, 10])),
        vec![k("closest to 9"), k("last checkpoint")]
    );
    assert_eq!(
        reasons(&EveryNStepsClosest::new(4, None), &listing(&[4, 5]))[1],
        k("last checkpoint"),
    );
    assert_eq!(
        reasons(&EveryNStepsClosest::new(4, None), &listing(&[4, 5, 6]))[1],
        d("step 4 is closer to 4"),
    );
}

#[cfg(feature = "best")]
#[test]
fn best_n() {
    let mut cs = with_loss(
        &[0, 1, 2, 3, 4],
        &[Some(3.0), Some(1.0), None, Some(2.0), Some(9.0)],
    );
    cs[4].metrics = Some(common::loss(serde_json::json!("n/a")));
    let p = BestN::new("loss", BestMode::Min, Some(2));
    assert_eq!(
        reasons(&p, &cs),
        vec![
            d("not among the best 2 by loss (min): rank 3"),
            k("best 2 by loss (min): rank 1"),
            k("no metrics; kept (keep_checkpoints_without_metrics)"),
            k("best 2 by loss (min): rank 2"),
            d("not among the best 2 by loss (min): rank 4; no usable loss value"),
        ]
    );
    let p = p.keep_checkpoints_without_metrics(false);
    assert_eq!(
        reasons(&p, &cs)[2],
        d("no metrics; dropped (keep_checkpoints_without_metrics is false)")
    );
    assert_eq!(
        reasons(&BestN::new("loss", BestMode::Min, Some(9)), &cs)[0],
        k("5 checkpoints <= n = 9: all kept")
    );
    assert_eq!(
        reasons(&BestN::new("loss", BestMode::Min, Some(0)), &cs)[0],
        d("BestN with n = 0 keeps none")
    );
    assert_eq!(
        reasons(&BestN::new("loss", BestMode::Min, None), &cs)[0],
        k("BestN without n keeps all")
    );
}

#[cfg(feature = "time")]
#[test]
fn time_based() {
    let cs = listing(&[0, 1, 2, 3]);
    assert_eq!(
        reasons(&EveryNSeconds::new(2), &cs),
        vec![
            k("first checkpoint (time anchor)"),
            d("only 1 < 2 s after kept step 0"),
            k("2 >= 2 s after kept step 0"),
            d("only 1 < 2 s after kept step 2"),
        ]
    );
    // now is base + 3600 s; the checkpoints are at base + 0..3 s.
    assert_eq!(
        reasons(&LatestDuration::new(3598), &cs),
        vec![
            d("older than 3598 s (age 3600 s)"),
            d("older than 3598 s (age 3599 s)"),
            k("within 3598 s of now (age 3598 s)"),
            k("after step 2, the first within 3598 s of now"),
        ]
    );
}

#[cfg(all(feature = "latest", feature = "custom"))]
#[test]
fn any_joins_the_reasons() {
    let p = AnyPreservationPolicy::new(vec![
        Box::new(LatestN::new(Some(1))),
        Box::new(CustomSteps::new([0, 2])),
    ]);
    assert_eq!(
        reasons(&p, &listing(&[0, 1, 2])),
        vec![
            k("listed in CustomSteps"),
            d("not among newest 1; not listed in CustomSteps"),
            k("newest 1; listed in CustomSteps"),
        ]
    );
}

#[cfg(feature = "latest")]
#[test]
fn decide_sorts_and_pads() {
    let mut cs = listing(&[5, 1, 3]);
    cs.reverse();
    let out = decide(&LatestN::new(Some(2)), &cs, &cx());
    assert_eq!(
        out.iter().map(|(s, v)| (*s, v.keep)).collect::<Vec<_>>(),
        vec![(1, false), (3, true), (5, true)]
    );
}

/// A faulty third-party policy that answers for only one checkpoint.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Short {}

#[typetag::serde]
impl PreservationPolicy for Short {
    fn should_preserve(
        &self,
        checkpoints: &[ckpt_core::CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        checkpoints
            .iter()
            .take(1)
            .map(|_| Verdict::drop("short"))
            .collect()
    }
}

#[test]
fn missing_verdicts_keep() {
    let cs = listing(&[1, 2]);
    let out = decide(&Short {}, &cs, &cx());
    assert_eq!(out[0].1, Verdict::drop("short"));
    assert_eq!(out[1].1, Verdict::keep("no verdict from the policy; kept"));
    let any = AnyPreservationPolicy::new(vec![Box::new(Short {})]);
    assert!(any.should_preserve(&cs, &cx())[1].keep);
    // A third-party policy registered outside the crate is read from JSON like the others.
    let p = preservation_policy_from_json(r#"{"type": "Short"}"#).unwrap();
    assert!(!p.should_preserve(&cs, &cx())[0].keep);
}
