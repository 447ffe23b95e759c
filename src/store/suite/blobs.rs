//! The `BlobStore` half of the suite: committed blobs, and uploads from state to state.

use bytes::Bytes;
use futures_util::StreamExt;

use super::super::{BlobStore, ByteRange, ByteStream, UploadState};
use crate::oci::{Algorithm, Digest};

fn stream_of(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

/// Appends and expects success.
pub(super) async fn append(
    store: &dyn BlobStore,
    id: &str,
    from: &UploadState,
    body: ByteStream,
) -> UploadState {
    match store.append_upload(id, from, None, body).await {
        Ok(state) => state,
        Err((_, e)) => panic!("append to {id} failed: {e}"),
    }
}

/// The upload holds exactly `want`, where the store can read an upload back
/// (which may end its appends: only commit or delete it after this).
async fn assert_upload_holds(store: &dyn BlobStore, id: &str, st: &UploadState, want: &[u8]) {
    assert_eq!(st.len, want.len() as u64);
    if let Some(s) = store.read_upload(id, st).await.unwrap() {
        assert!(collect(s).await == want, "upload {id} differs");
    }
}

/// Whether the store lists an upload under `id`.
async fn lists_upload(store: &dyn BlobStore, id: &str) -> bool {
    let listed = store.list_uploads().await.unwrap();
    listed.iter().any(|(listed, _)| listed == id)
}

async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("read"));
    }
    out
}

pub async fn blob_store(store: &dyn BlobStore) {
    let data = b"hello, blob store";
    let d = Digest::sha256_of(data);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.read(&d, None).await.unwrap().is_none());
    assert!(!store.delete(&d).await.unwrap());

    // Upload in two appends, commit, read back whole and in ranges.
    let st = store.begin_upload("u1").await.unwrap();
    assert_eq!(st.len, 0);
    let st = append(store, "u1", &st, stream_of(&[b"hello, "])).await;
    assert_eq!(st.len, 7);
    let st = append(store, "u1", &st, stream_of(&[b"blob", b" store"])).await;
    assert_eq!(st.len, 17);
    assert_upload_holds(store, "u1", &st, data).await;
    store.commit_upload("u1", &st, &d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(17));
    let r = store.read(&d, None).await.unwrap().unwrap();
    assert_eq!(r.size, 17);
    assert_eq!(collect(r.stream).await, data);
    let r = store
        .read(&d, Some(ByteRange { start: 7, end: 10 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(collect(r.stream).await, b"blob");
    assert!(
        !lists_upload(store, "u1").await,
        "a committed upload is gone"
    );

    // A second upload of the same content commits as a no-op success.
    let st = store.begin_upload("u2").await.unwrap();
    let st = append(store, "u2", &st, stream_of(&[data])).await;
    store.commit_upload("u2", &st, &d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(17));

    // An append that was never recorded (the process died before its record
    // was written) is dropped: the next one goes on from the recorded state.
    let st0 = store.begin_upload("lost").await.unwrap();
    let st1 = append(store, "lost", &st0, stream_of(&[b"kept "])).await;
    let _lost = append(store, "lost", &st1, stream_of(&[b"never recorded"])).await;
    let st2 = append(store, "lost", &st1, stream_of(&[b"and this"])).await;
    assert_eq!(st2.len, 13);
    assert_upload_holds(store, "lost", &st2, b"kept and this").await;
    let lost_d = Digest::sha256_of(b"kept and this");
    store.commit_upload("lost", &st2, &lost_d).await.unwrap();
    let r = store.read(&lost_d, None).await.unwrap().unwrap();
    assert_eq!(collect(r.stream).await, b"kept and this");
    assert!(store.delete(&lost_d).await.unwrap());

    // Thousands of tiny chunks (more than one writev takes) arrive whole and in order.
    let st = store.begin_upload("tiny").await.unwrap();
    let tiny: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let items: Vec<std::io::Result<Bytes>> = tiny
        .iter()
        .map(|b| Ok(Bytes::copy_from_slice(&[*b])))
        .collect();
    let st = append(
        store,
        "tiny",
        &st,
        Box::pin(futures_util::stream::iter(items)),
    )
    .await;
    assert_eq!(st.len, 5000);
    assert_upload_holds(store, "tiny", &st, &tiny).await;
    store.delete_upload("tiny", Some(&st)).await.unwrap();

    // Megabytes in appends that start and end off block boundaries, with buffers
    // of odd sizes, arrive whole and in order (direct I/O stages and aligns these).
    let mut st = store.begin_upload("big").await.unwrap();
    let big: Vec<u8> = (0..(8u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut sent = 0;
    for len in [
        (3 << 20) + 7,
        1,
        4095,
        (5 << 20) + 4097,
        12_345 - 7 - 1 - 4095 - 4097,
    ] {
        let part = &big[sent..sent + len];
        let bufs: Vec<std::io::Result<Bytes>> = part
            .chunks(65_537)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let before = st.len;
        st = append(
            store,
            "big",
            &st,
            Box::pin(futures_util::stream::iter(bufs)),
        )
        .await;
        assert_eq!(st.len - before, len as u64);
        sent += len;
    }
    assert_eq!(sent, big.len());
    // Committed, megabytes read back whole and in a range that starts and ends
    // inside read buffers and spans several of them.
    let big_d = Digest::sha256_of(&big);
    let bst = store.begin_upload("big-blob").await.unwrap();
    let bufs: Vec<std::io::Result<Bytes>> = big
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let bufs: ByteStream = Box::pin(futures_util::stream::iter(bufs));
    let bst = append(store, "big-blob", &bst, bufs).await;
    store.commit_upload("big-blob", &bst, &big_d).await.unwrap();
    let r = store.read(&big_d, None).await.unwrap().unwrap();
    assert_eq!(r.size, big.len() as u64);
    assert!(collect(r.stream).await == big);
    let (start, end) = ((1 << 20) - 3, (5 << 20) + 10);
    let r = store
        .read(&big_d, Some(ByteRange { start, end }))
        .await
        .unwrap()
        .unwrap();
    assert!(collect(r.stream).await == big[start as usize..=end as usize]);
    assert!(store.delete(&big_d).await.unwrap());

    // A failure after megabytes keeps every byte that arrived.
    let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from(vec![7u8; (2 << 20) + 3])),
        Err(std::io::Error::other("client went away")),
    ]));
    let (kept, e) = store
        .append_upload("big", &st, None, failing)
        .await
        .unwrap_err();
    assert!(matches!(e, super::super::AppendError::Body(_)), "{e:?}");
    assert_eq!(kept.len, big.len() as u64 + (2 << 20) + 3);
    let mut whole = big.clone();
    whole.extend(vec![7u8; (2 << 20) + 3]);
    // ... and goes on from there.
    let kept = append(store, "big", &kept, stream_of(&[b"!"])).await;
    whole.push(b'!');
    let whole_d = Digest::sha256_of(&whole);
    store.commit_upload("big", &kept, &whole_d).await.unwrap();
    let r = store.read(&whole_d, None).await.unwrap().unwrap();
    assert!(collect(r.stream).await == whole);
    assert!(store.delete(&whole_d).await.unwrap());

    // A failing stream keeps what arrived before the failure.
    let st = store.begin_upload("u3").await.unwrap();
    let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("client went away")),
    ]));
    let (kept, _) = store
        .append_upload("u3", &st, Some(10), failing)
        .await
        .unwrap_err();
    assert_eq!(kept.len, 3);
    let listed = store.list_uploads().await.unwrap();
    let u3: Vec<_> = listed.iter().filter(|(id, _)| id == "u3").collect();
    assert_eq!(u3.len(), 1, "{listed:?}");
    assert!(u3[0].1 > 0, "an upload has a modification time");
    store.delete_upload("u3", Some(&kept)).await.unwrap();
    assert!(!lists_upload(store, "u3").await, "a deleted upload is gone");
    store.delete_upload("u3", Some(&kept)).await.unwrap(); // idempotent
    store.delete_upload("u3", None).await.unwrap();

    // Removing by id alone (no state: a session whose record is lost) removes it too.
    let st = store.begin_upload("orphan").await.unwrap();
    append(store, "orphan", &st, stream_of(&[b"left behind"])).await;
    store.delete_upload("orphan", None).await.unwrap();
    assert!(!lists_upload(store, "orphan").await, "an orphan is gone");

    // Small whole writes (manifests) and limits on reading them back.
    let m = b"{\"schemaVersion\":2}";
    let md = Digest::of(Algorithm::Sha512, m);
    store.write_all(&md, Bytes::from_static(m)).await.unwrap();
    assert_eq!(
        store.read_all(&md, 1024).await.unwrap().unwrap().as_ref(),
        m
    );
    assert!(store.read_all(&md, 3).await.is_err());
    assert!(store.delete(&md).await.unwrap());
    assert_eq!(store.read_all(&md, 1024).await.unwrap(), None);

    rot_and_quarantine(store).await;
    listing(store).await;
    sweeping(store).await;
}

/// A sweep deletes a blob committed before the time it is given, and keeps
/// one committed at it or later.
async fn sweeping(store: &dyn BlobStore) {
    let bytes = b"committed a while ago";
    let d = Digest::sha256_of(bytes);
    let st = store.begin_upload("swept").await.unwrap();
    let st = append(store, "swept", &st, stream_of(&[bytes])).await;
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    store.commit_upload("swept", &st, &d).await.unwrap();
    for apply in [false, true] {
        assert_eq!(
            store.sweep(&d, before, apply).await.unwrap(),
            None,
            "committed after: kept"
        );
    }
    assert_eq!(store.stat(&d).await.unwrap(), Some(bytes.len() as u64));
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let size = Some(bytes.len() as u64);
    assert_eq!(
        store.sweep(&d, later, false).await.unwrap(),
        size,
        "would go"
    );
    assert_eq!(store.stat(&d).await.unwrap(), size, "a dry run keeps it");
    assert_eq!(store.sweep(&d, later, true).await.unwrap(), size);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert_eq!(
        store.sweep(&d, later, true).await.unwrap(),
        None,
        "gone already"
    );
}

/// Bytes that do not hash to their digest are never handed out whole as the
/// blob; set aside, a blob is gone until a commit installs a fresh copy.
async fn rot_and_quarantine(store: &dyn BlobStore) {
    let good = b"the manifest as pushed";
    let d = Digest::sha256_of(good);
    // `write_all` trusts its caller: writing other bytes is how rot looks from here.
    store
        .write_all(&d, Bytes::from_static(b"the manifest as rotted"))
        .await
        .unwrap();
    match store.read_all(&d, 1024).await {
        Err(crate::store::StoreError::Rotten { digest, .. }) => assert_eq!(digest, d),
        other => panic!("rotten bytes read as {other:?}"),
    }
    assert!(store.quarantine(&d).await.unwrap());
    assert_eq!(store.stat(&d).await.unwrap(), None, "set aside, not served");
    assert!(store.read(&d, None).await.unwrap().is_none());
    assert!(
        !store.quarantine(&d).await.unwrap(),
        "nothing left to set aside"
    );
    store.write_all(&d, Bytes::from_static(good)).await.unwrap();
    assert_eq!(
        store.read_all(&d, 1024).await.unwrap().unwrap().as_ref(),
        good
    );

    // A commit replaces a copy that is there (it may be the rotten one).
    let blob = b"layer bytes, verified as they were uploaded";
    let bd = Digest::sha256_of(blob);
    store
        .write_all(&bd, Bytes::from_static(b"layer bytes, cut"))
        .await
        .unwrap();
    let st = store.begin_upload("again").await.unwrap();
    let st = append(store, "again", &st, stream_of(&[blob])).await;
    store.commit_upload("again", &st, &bd).await.unwrap();
    let r = store.read(&bd, None).await.unwrap().unwrap();
    assert_eq!(r.size, blob.len() as u64);
    assert!(
        collect(r.stream).await == blob,
        "the fresh copy replaced the cut one"
    );
    for x in [&d, &bd] {
        store.delete(x).await.unwrap();
    }
}

/// Listing pages through committed blobs in digest order, whatever the page size.
async fn listing(store: &dyn BlobStore) {
    let mut want: Vec<(Digest, u64)> = Vec::new();
    for i in 0..23u32 {
        let bytes = format!("listed blob {i}").repeat(i as usize + 1);
        let alg = if i % 5 == 0 {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        };
        let d = Digest::of(alg, bytes.as_bytes());
        store
            .write_all(&d, Bytes::from(bytes.clone()))
            .await
            .unwrap();
        want.push((d, bytes.len() as u64));
    }
    want.sort();
    for page in [1, 4, 23, 100] {
        let mut got = Vec::new();
        let mut after: Option<Digest> = None;
        loop {
            let p = store.list_blobs(after.as_ref(), page).await.unwrap();
            assert!(p.len() <= page);
            let Some((last, _)) = p.last() else { break };
            after = Some(last.clone());
            got.extend(p);
        }
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in digest order");
        got.retain(|g| want.iter().any(|w| w.0 == g.0));
        assert_eq!(got, want, "pages of {page}");
    }
    for (d, _) in &want {
        store.delete(d).await.unwrap();
    }
    let left = store.list_blobs(None, 1000).await.unwrap();
    assert!(
        !left.iter().any(|l| want.iter().any(|w| w.0 == l.0)),
        "deleted, not listed"
    );
}

#[tokio::test]
async fn fs_blob_store_passes_the_suite() {
    use super::super::UploadIo;
    let by_size = UploadIo::BySize { large: 1 << 20 };
    for fsync in [true, false] {
        for io in [UploadIo::Direct, UploadIo::Buffered, by_size] {
            let dir = tempfile::tempdir().unwrap();
            let store = super::super::fs::FsBlobStore::open(dir.path(), fsync)
                .unwrap()
                .upload_io(io);
            blob_store(&store).await;
        }
    }
}

/// With durable commits, an append says its bytes are durable once it reaches
/// the direct-I/O part of the upload, and not while it stays in the page-cache
/// head; without, always (a crash of the process loses nothing).
#[tokio::test]
async fn fs_appends_say_whether_their_bytes_are_durable() {
    use super::super::UploadIo;
    let cases = [
        (true, UploadIo::Direct, [true, true]),
        (true, UploadIo::Buffered, [false, false]),
        (true, UploadIo::BySize { large: 1 << 20 }, [false, true]),
        (false, UploadIo::Buffered, [true, true]),
    ];
    for (fsync, io, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::fs::FsBlobStore::open(dir.path(), fsync)
            .unwrap()
            .upload_io(io);
        let st = store.begin_upload("u").await.unwrap();
        let small = append(&store, "u", &st, stream_of(&[&[1u8; 1000]])).await;
        static BIG: [u8; 1 << 20] = [2u8; 1 << 20];
        let past = append(&store, "u", &small, stream_of(&[&BIG])).await;
        assert_eq!([small.synced, past.synced], want, "fsync {fsync}, {io:?}");
    }
}
