import Testing

@testable import Gateway

/// A client connection's life on the HTTP port, without sockets: every bound the front keeps.
@Suite struct HTTPConnectionMachineTests {
    typealias Machine = HTTPConnectionMachine

    static func headed(
        contentLength: Int? = 10, expectsContinue: Bool = false, keepAlive: Bool = true, headerBytes: Int = 100
    ) -> (Machine, [Machine.Action]) {
        var m = Machine()
        _ = m.activated()
        _ = m.bytesArrived()
        let actions = m.head(
            contentLength: contentLength, expectsContinue: expectsContinue, keepAlive: keepAlive,
            headerBytes: headerBytes, maxHeaderBytes: 1_000, maxBodyBytes: 100)
        return (m, actions)
    }

    @Test func aRequest_runsIdleHeadBodyResponding_andBackToIdle() {
        var m = Machine()
        #expect(m.activated() == [.arm(.idle)])
        #expect(m.bytesArrived() == [.arm(.header)])
        #expect(m.bytesArrived() == [], "only the first bytes start a head")
        #expect(
            m.head(
                contentLength: 10, expectsContinue: false, keepAlive: true, headerBytes: 100, maxHeaderBytes: 1_000,
                maxBodyBytes: 100) == [.arm(.body)])
        #expect(m.body(bytes: 10) == [])
        #expect(m.end() == [.disarm, .dispatch(keepAlive: true)])
        #expect(m.responseEnded(keepAlive: true) == [.arm(.idle)])
        #expect(m.state == .idle)
    }

    @Test(arguments: [(true, true, false), (true, false, true), (false, true, true)])
    func responseEnd_closesUnlessBothSidesKeepTheConnection(client: Bool, response: Bool, closes: Bool) {
        var (m, _) = Self.headed(keepAlive: client)
        _ = m.end()
        #expect(m.responseEnded(keepAlive: response) == (closes ? [.close] : [.arm(.idle)]))
    }

    @Test func idleTimeout_closes_onlyWhileIdle() {
        var m = Machine()
        _ = m.activated()
        #expect(m.timerFired(.idle) == [.close])
        var busy = Self.headed().0
        _ = busy.end()
        #expect(busy.timerFired(.idle) == [], "a stale idle timer while responding changes nothing")
    }

    @Test func headerTimeout_refusesWith408() {
        var m = Machine()
        _ = m.activated()
        _ = m.bytesArrived()
        #expect(m.timerFired(.header) == [.disarm, .refuse(.headerTimeout)])
        #expect(m.state == .closed)
    }

    @Test func bodyTimeout_refusesWith408() {
        var (m, _) = Self.headed()
        _ = m.body(bytes: 4)
        #expect(m.timerFired(.body) == [.disarm, .refuse(.bodyTimeout)])
    }

    @Test func announcedBodyOverTheLimit_isRefusedAtTheHead_withoutContinue() {
        let (_, actions) = Self.headed(contentLength: 101, expectsContinue: true)
        #expect(actions == [.disarm, .refuse(.bodyTooLarge)])
    }

    @Test func chunkedBodyOverTheLimit_isRefusedWhenItCrossesIt() {
        var (m, _) = Self.headed(contentLength: nil)
        #expect(m.body(bytes: 60) == [])
        #expect(m.body(bytes: 40) == [], "exactly the limit is allowed")
        #expect(m.body(bytes: 1) == [.disarm, .refuse(.bodyTooLarge)])
        #expect(m.end() == [], "nothing is dispatched after a refusal")
    }

    @Test func expectContinue_isAnsweredWhenTheBodyFits() {
        let (_, actions) = Self.headed(contentLength: 50, expectsContinue: true)
        #expect(actions == [.arm(.body), .sendContinue])
    }

    @Test func headersOverTheLimit_areRefusedWith431() {
        let (_, actions) = Self.headed(headerBytes: 1_001)
        #expect(actions == [.disarm, .refuse(.headersTooLarge)])
    }

    @Test func parseErrors_refuseBeforeAResponse_andCloseDuringOne() {
        var idle = Machine()
        _ = idle.activated()
        #expect(idle.parseError(headerOverflow: false) == [.disarm, .refuse(.malformed)])
        var overflow = Machine()
        _ = overflow.activated()
        #expect(overflow.parseError(headerOverflow: true) == [.disarm, .refuse(.headersTooLarge)])
        var (responding, _) = Self.headed()
        _ = responding.end()
        #expect(responding.parseError(headerOverflow: false) == [.close])
    }

    @Test func clientGone_whileResponding_cancelsTheRequest() {
        var (m, _) = Self.headed()
        _ = m.end()
        #expect(m.inactive() == [.disarm, .cancelRequest])
        var idle = Machine()
        _ = idle.activated()
        #expect(idle.inactive() == [.disarm])
    }

    @Test func pipelinedHead_afterAResponse_startsWithoutFirstBytes() {
        var (m, _) = Self.headed()
        _ = m.end()
        _ = m.responseEnded(keepAlive: true)
        #expect(
            m.head(
                contentLength: 0, expectsContinue: false, keepAlive: true, headerBytes: 10, maxHeaderBytes: 1_000,
                maxBodyBytes: 100) == [.arm(.body)])
    }
}
