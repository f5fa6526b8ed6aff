import Testing

/// The suites that start real `bifrost` processes. They share the machine's cores with the nodes
/// they start and measure timing (failure detection, drains, load without errors), so they run
/// one at a time, never beside each other.
@Suite(.serialized) enum MultiProcess {}
