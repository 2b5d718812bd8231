//! When `PERMISSION_DENIED` closes the connection (wire-spec.md §5 and §7): an ACL
//! denial is answered and the connection stays open; a failed peer handshake (a
//! foreign cluster name) is answered and the connection is closed.

mod cluster_common;
mod common;
mod security_support;

use std::io::Write;
use std::time::Duration;

use cluster_common::Cluster;
use commitlog::types::NodeId;
use commitlog::wire::{self, ApiKey, ErrorCode, Request, RequestFrame};
use common::read_to_close;
use security_support::Pki;

#[test]
fn peer_handshake_with_a_foreign_cluster_name_is_denied_and_closed() {
    // A one-node cluster answers PeerHandshake (a --dev node does not know it).
    let cluster = Cluster::start(1);
    let addr = cluster.nodes[0].addr();
    let mut tcp = std::net::TcpStream::connect(&addr).expect("connect");
    let mut frame = Vec::new();
    let handshake = Request::PeerHandshake {
        cluster_name: "elsewhere".to_string(),
        node_id: NodeId(9),
        node_name: "stranger".to_string(),
    };
    wire::encode_request(&RequestFrame::new(5, handshake), &mut frame);
    tcp.write_all(&frame).unwrap();
    let (bytes, closed) = read_to_close(&mut tcp, Duration::from_secs(20));
    let response = wire::decode_response(&bytes, ApiKey::PeerHandshake).expect("one answer");
    assert_eq!(response.correlation_id, 5);
    let err = response.result.expect_err("a foreign cluster is refused");
    assert_eq!(err.code, ErrorCode::PermissionDenied, "{}", err.message);
    assert!(closed, "the connection is closed after the refusal");
    cluster.nodes[0]
        .client()
        .ping()
        .expect("others are still served");
}

#[test]
fn an_acl_denial_keeps_the_connection_open() {
    let pki = Pki::generate();
    let server = pki.start_server(&[]);
    let mut nobody = pki.client(server.addr, Some("nobody")).unwrap();
    let err = nobody.produce(b"intruder").expect_err("denied");
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    // The same connection goes on: the next request is answered.
    nobody
        .ping()
        .expect("ping on the same connection after a denial");
    let err = nobody.produce(b"again").expect_err("still denied");
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
}
