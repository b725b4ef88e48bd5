//! The run's certificate authority and every node's transport certificate (rcgen).
//!
//! Each run gets a fresh CA. Every replica, client and the controller get a P-256 key and a
//! certificate signed by it that names their identity ([`replica::net::tls::Identity`]) as a DNS
//! subject alternative name, valid for both client and server authentication.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use replica::net::tls::{Identity, TlsMaterial};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A run's certificate authority.
pub struct RunCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A node's certificate and key.
pub struct NodeCert {
    /// Whom it names.
    pub identity: Identity,
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl RunCa {
    /// A fresh CA.
    ///
    /// # Errors
    ///
    /// When key generation or signing fails.
    pub fn generate(name: &str) -> Result<RunCa, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(RunCa { issuer })
    }

    /// The CA certificate, DER.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues the certificate of `identity`.
    ///
    /// # Errors
    ///
    /// When key generation or signing fails.
    pub fn issue(&self, identity: Identity) -> Result<NodeCert, rcgen::Error> {
        self.issue_for_name(identity, &identity.dns_name())
    }

    /// Issues a certificate for `identity` that names `dns_name` (tests use a wrong name).
    ///
    /// # Errors
    ///
    /// When key generation or signing fails.
    pub fn issue_for_name(
        &self,
        identity: Identity,
        dns_name: &str,
    ) -> Result<NodeCert, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![dns_name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, dns_name);
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            identity,
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }
}

impl NodeCert {
    /// The TLS material of this node under `ca`.
    pub fn tls(&self, ca: &RunCa) -> TlsMaterial {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        TlsMaterial::new(ca.cert(), self.cert.clone(), key)
    }
}
