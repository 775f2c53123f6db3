//! Bad input, 11: restore and delete args.

use super::*;

#[test]
fn bad_restore_and_delete_arguments() {
    case("restore of a step that does not exist", |sb| {
        good_root(&sb.root, &[1]);
        let r = reader(&sb.root).unwrap();
        expect_err(r.restore(Some(404)), ErrorKind::NotFound, &["step 404"]);
        expect_err(
            r.restore(Some(u64::MAX)),
            ErrorKind::NotFound,
            &["step 18446744073709551615"],
        );
    });
    case("restore of the latest step of an empty root", |sb| {
        let m = writer(&sb.root).build().unwrap();
        expect_err(
            m.restore(None),
            ErrorKind::NotFound,
            &["no committed steps"],
        );
    });
    case("restore_items with traversing and unknown names", |sb| {
        good_root(&sb.root, &[1]);
        let r = reader(&sb.root).unwrap();
        for name in [
            "../outside",
            "../../outside/stepdir/state",
            "/abs",
            "",
            ".",
            "state/../state",
            "state/",
            "nope",
        ] {
            expect_err(
                r.restore_items(Some(1), &[name]),
                ErrorKind::NotFound,
                &[&format!("{name:?}"), "step 1", "available items"],
            );
        }
        assert_eq!(
            r.restore_items(Some(1), &["state"])
                .unwrap()
                .json_value("state")
                .unwrap(),
            &json!({"step": 1})
        );
    });
    case("delete of a step that does not exist", |sb| {
        good_root(&sb.root, &[1]);
        let mut w = writer(&sb.root).build().unwrap();
        expect_err(w.delete(2), ErrorKind::NotFound, &["step 2"]);
        assert_eq!(w.all_steps(), vec![1]);
    });
    case(
        "save of a step that exists on disk but was not listed",
        |sb| {
            let mut w = writer(&sb.root).build().unwrap();
            // Written behind the manager's back (a second writer would be Locked out).
            fake_step(&sb.root.join("5"), &json!({"step": 5}));
            expect_err(
                w.save(
                    5,
                    Composite::new().json_value("s", json!(5)),
                    SaveOptions::default().force(true),
                ),
                ErrorKind::AlreadyExists,
                &["step 5", "reload"],
            );
            w.reload().unwrap();
            assert_eq!(w.all_steps(), vec![5]);
            expect_err(
                w.save(
                    5,
                    Composite::new().json_value("s", json!(5)),
                    SaveOptions::default().force(true),
                ),
                ErrorKind::AlreadyExists,
                &["step 5"],
            );
            assert_eq!(
                w.restore(Some(5)).unwrap().json_value("state").unwrap(),
                &json!({"step": 5}),
                "the existing step is untouched"
            );
        },
    );
}
