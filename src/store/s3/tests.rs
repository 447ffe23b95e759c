//! The S3 store against a real S3-compatible server: `scripts/s3-test-server.sh
//! start` prints the `BERTH_TEST_S3_*` variables these need (the test command
//! starts it). Without them the tests fail, never skip.

use bytes::Bytes;
use futures_util::StreamExt;

use super::{S3BlobStore, S3Settings};
use crate::oci::Digest;
use crate::store::{BlobStore, ByteStream, UploadState};

const HINT: &str = "start the test S3 server: eval \"$(scripts/s3-test-server.sh start)\"";

/// Settings for a new bucket of its own on the test server.
pub(crate) fn settings(part_size_mib: u64) -> S3Settings {
    let var =
        |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HINT}"));
    S3Settings {
        bucket: format!("berth-test-{}", uuid::Uuid::new_v4().simple()),
        prefix: "reg/".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(var("BERTH_TEST_S3_ENDPOINT")),
        path_style: true,
        access_key_id: Some(var("BERTH_TEST_S3_ACCESS_KEY")),
        secret_access_key: Some(var("BERTH_TEST_S3_SECRET_KEY")),
        session_token: None,
        redirect_downloads: false,
        presign_ttl_secs: 60,
        part_size_mib,
        create_bucket: true,
    }
}

pub(crate) async fn fresh_store(part_size_mib: u64) -> S3BlobStore {
    S3BlobStore::connect(&settings(part_size_mib))
        .await
        .unwrap_or_else(|e| panic!("connecting to the test S3 server: {e}\n{HINT}"))
}

fn chunks(bytes: &[u8], size: usize) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> = bytes
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(items))
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

async fn append(
    store: &S3BlobStore,
    id: &str,
    from: &UploadState,
    body: ByteStream,
) -> UploadState {
    match store.append_upload(id, from, None, body).await {
        Ok(s) => s,
        Err((_, e)) => panic!("append to {id}: {e}"),
    }
}

async fn read_back(store: &S3BlobStore, d: &Digest) -> Vec<u8> {
    let mut r = store.read(d, None).await.unwrap().expect("committed");
    let mut out = Vec::new();
    while let Some(c) = r.stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    assert_eq!(out.len() as u64, r.size);
    out
}

/// Multipart uploads and objects left under the store's `uploads/`.
async fn leftovers(store: &S3BlobStore) -> (usize, usize) {
    let root = format!("{}uploads/", store.prefix);
    (
        store.multiparts(&root).await.unwrap().len(),
        store.objects(&root).await.unwrap().len(),
    )
}

#[tokio::test]
async fn s3_blob_store_passes_the_suite() {
    let store = fresh_store(5).await;
    crate::store::suite::blobs::blob_store(&store).await;
    assert_eq!(
        leftovers(&store).await,
        (0, 0),
        "the suite's uploads all ended"
    );
}

/// One body far larger than a part is cut into parts as it streams; thousands
/// of tiny chunks are coalesced; both read back whole.
#[tokio::test]
async fn s3_uploads_cut_any_body_into_parts() {
    let store = fresh_store(5).await;
    let huge = pattern((23 << 20) + 12_345, 1);
    let st = store.begin_upload("huge").await.unwrap();
    let st = append(&store, "huge", &st, chunks(&huge, huge.len())).await;
    let mp = super::upload::parts_of(&st);
    assert_eq!(mp, 4, "four full parts of 5 MiB, the rest staged");
    let d = Digest::sha256_of(&huge);
    store.commit_upload("huge", &st, &d).await.unwrap();
    store.delete_upload("huge", Some(&st)).await.unwrap();
    assert!(read_back(&store, &d).await == huge);

    // 11 MiB in 7 KiB chunks over appends of odd sizes, each crossing part boundaries.
    let tiny = pattern(11 << 20, 2);
    let mut st = store.begin_upload("tiny").await.unwrap();
    for piece in tiny.chunks((3 << 20) + 777) {
        st = append(&store, "tiny", &st, chunks(piece, 7 * 1024)).await;
    }
    assert_eq!(st.len, tiny.len() as u64);
    let d = Digest::sha256_of(&tiny);
    store.commit_upload("tiny", &st, &d).await.unwrap();
    store.delete_upload("tiny", Some(&st)).await.unwrap();
    assert!(read_back(&store, &d).await == tiny);
    let r = store
        .read(
            &d,
            Some(crate::store::ByteRange {
                start: (5 << 20) - 2,
                end: (5 << 20) + 2,
            }),
        )
        .await
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    let mut s = r.stream;
    while let Some(c) = s.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, tiny[(5 << 20) - 2..=(5 << 20) + 2]);
    assert_eq!(leftovers(&store).await, (0, 0));
}

/// A session goes on in another process (a new store on the same bucket) from
/// its recorded state, and cancelled, leaves no multipart upload or staged
/// object in the bucket, including one an unrecorded append began.
#[tokio::test]
async fn s3_sessions_survive_a_restart_and_abort_cleanly() {
    let settings = settings(5);
    let first = S3BlobStore::connect(&settings).await.unwrap();
    let a = pattern(7 << 20, 3);
    let st = first.begin_upload("s").await.unwrap();
    let st = append(&first, "s", &st, chunks(&a, 64 << 10)).await;
    drop(first);
    let second = S3BlobStore::connect(&settings).await.unwrap();
    let b = pattern(2 << 20, 4);
    let st = append(&second, "s", &st, chunks(&b, 1 << 20)).await;
    let whole = [a, b].concat();
    let d = Digest::sha256_of(&whole);
    second.commit_upload("s", &st, &d).await.unwrap();
    second.delete_upload("s", Some(&st)).await.unwrap();
    assert!(read_back(&second, &d).await == whole);

    // Parts sent, then an append the registry never recorded begins another
    // multipart upload: deleting by id alone finds and aborts both.
    let st = second.begin_upload("gone").await.unwrap();
    let recorded = append(&second, "gone", &st, chunks(&pattern(6 << 20, 5), 1 << 20)).await;
    assert!(leftovers(&second).await.0 >= 1);
    let _unrecorded = append(&second, "other", &st, chunks(&pattern(6 << 20, 6), 1 << 20)).await;
    second.delete_upload("gone", Some(&recorded)).await.unwrap();
    second.delete_upload("other", None).await.unwrap();
    assert_eq!(
        leftovers(&second).await,
        (0, 0),
        "nothing left in the bucket"
    );
}

/// A wrong secret is refused at start, not at the first push.
#[tokio::test]
async fn s3_refuses_a_wrong_secret_at_start() {
    let mut settings = settings(5);
    settings.secret_access_key = Some("not-the-secret".into());
    let e = S3BlobStore::connect(&settings)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("bucket"), "{e}");
}

/// Settings S3 would refuse later are refused when the config is read.
#[test]
fn s3_settings_are_checked_before_any_request() {
    let parse = |extra: &str| -> Result<(), String> {
        let text = format!("bucket = \"b\"\n{extra}");
        let s: S3Settings = toml::from_str(&text).map_err(|e| e.to_string())?;
        s.validate()
    };
    assert_eq!(parse(""), Ok(()));
    assert!(
        parse("part_size_mib = 4")
            .unwrap_err()
            .contains("5 to 5120")
    );
    assert!(parse("part_size_mib = 5121").is_err());
    assert!(parse("presign_ttl_secs = 0").is_err());
    assert!(parse("presign_ttl_secs = 604801").is_err());
    assert!(
        parse("access_key_id = \"k\"")
            .unwrap_err()
            .contains("go together")
    );
    assert!(
        parse("bucket_name = \"x\"").is_err(),
        "unknown keys are refused"
    );
    let empty: S3Settings = toml::from_str("bucket = \"\"").unwrap();
    assert!(empty.validate().is_err());
}
