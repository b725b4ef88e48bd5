//! Certificate identities: every kind round-trips through its DNS name, a gateway speaks only
//! for its range, and malformed or oversized gateway names are no identity.

use crate::core::{ClientId, ReplicaId};
use crate::net::tls::{GATEWAY_CLIENTS_MAX, Identity};

/// Setup: one identity of each kind. Test: parsing its DNS name gives it back.
#[test]
fn identities_round_trip_through_their_names() {
    for identity in [
        Identity::Replica(ReplicaId(3)),
        Identity::Client(ClientId(17)),
        Identity::Gateway { first: ClientId(16), count: 32 },
        Identity::Controller,
    ] {
        assert_eq!(Identity::parse(&identity.dns_name()), Some(identity), "{identity}");
    }
}

/// Setup: a gateway for clients 16..48 and a client. Test: the gateway speaks for its range
/// and no further; the client for itself only; replicas and the controller for nobody.
#[test]
fn a_gateway_speaks_for_its_range_only() {
    let gateway = Identity::Gateway { first: ClientId(16), count: 32 };
    assert!(gateway.speaks_for(ClientId(16)) && gateway.speaks_for(ClientId(47)));
    assert!(!gateway.speaks_for(ClientId(15)) && !gateway.speaks_for(ClientId(48)));
    assert!(Identity::Client(ClientId(5)).speaks_for(ClientId(5)));
    assert!(!Identity::Client(ClientId(5)).speaks_for(ClientId(6)));
    assert!(!Identity::Replica(ReplicaId(0)).speaks_for(ClientId(0)));
    assert!(!Identity::Controller.speaks_for(ClientId(0)));
    // The end of the id space does not overflow.
    let last = Identity::Gateway { first: ClientId(u32::MAX), count: 2 };
    assert!(last.speaks_for(ClientId(u32::MAX)));
}

/// Setup: gateway names that are malformed or claim too many clients. Test: none parses.
#[test]
fn malformed_gateway_names_are_no_identity() {
    let too_many = format!("g0-{}.gateway.ordeal", GATEWAY_CLIENTS_MAX + 1);
    for name in [
        "g0-0.gateway.ordeal",
        "g5.gateway.ordeal",
        "g-3.gateway.ordeal",
        "x0-3.gateway.ordeal",
        "g0-3x.gateway.ordeal",
        &too_many,
    ] {
        assert_eq!(Identity::parse(name), None, "{name}");
    }
}
