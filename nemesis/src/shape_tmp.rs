//! Placeholder until the relay branch lands with the real partition shapes.

/// How a partition splits the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionShape {
    /// One replica cut from the others.
    IsolateOne,
    /// The primary cut from the others.
    IsolatePrimary,
    /// Two halves.
    Halves,
    /// Each replica sees a different majority.
    MajorityRing,
    /// Two halves joined by one replica.
    Bridge,
    /// One replica's packets to the others dropped.
    OneWay,
}

impl PartitionShape {
    /// Every shape.
    pub const ALL: [PartitionShape; 6] = [
        PartitionShape::IsolateOne,
        PartitionShape::IsolatePrimary,
        PartitionShape::Halves,
        PartitionShape::MajorityRing,
        PartitionShape::Bridge,
        PartitionShape::OneWay,
    ];

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            PartitionShape::IsolateOne => "isolate-one",
            PartitionShape::IsolatePrimary => "isolate-primary",
            PartitionShape::Halves => "halves",
            PartitionShape::MajorityRing => "majority-ring",
            PartitionShape::Bridge => "bridge",
            PartitionShape::OneWay => "one-way",
        }
    }
}

impl std::str::FromStr for PartitionShape {
    type Err = String;
    fn from_str(name: &str) -> Result<PartitionShape, String> {
        PartitionShape::ALL
            .into_iter()
            .find(|shape| shape.name() == name)
            .ok_or_else(|| format!("unknown partition shape {name:?}"))
    }
}
