//! The VRRP state machine (RFC 5798 section 6; RFC 3768 section 6 for v2) as a pure function:
//! `(state, event) -> (state, actions)`. Time enters only through events, so tests drive it
//! without a clock. Each state owns its one timer: Backup the Master_Down_Timer, Master the
//! Adver_Timer; the runtime keeps a single timer and obeys `SetTimer` / `StopTimer`.

use std::{net::IpAddr, time::Duration};

use super::packet::Version;

/// Protocol states, plus keepalived's FAULT (a tracked interface or script failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not running (RFC 5798 6.4.1).
    Initialize,
    /// Watching the master (6.4.2).
    Backup,
    /// Owning the addresses (6.4.3).
    Master,
    /// Held out of the election by tracking (keepalived).
    Fault,
}

/// Settings of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Protocol version.
    pub version: Version,
    /// Configured priority (1-255; 255 = address owner).
    pub priority: u8,
    /// Advertisement_Interval in centiseconds.
    pub advert_cs: u16,
    /// Preempt a lower-priority master (the RFC default; keepalived `nopreempt` turns it off).
    pub preempt: bool,
    /// After start-up, do not preempt for this long (keepalived `preempt_delay`).
    pub preempt_delay: Duration,
    /// This node's primary address on the interface: breaks priority ties (6.4.3).
    pub local_addr: IpAddr,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The instance starts (6.4.1).
    Startup,
    /// The instance stops (a clean shutdown).
    Shutdown,
    /// The instance starts in a new agent that takes over from an agent of this node that
    /// was master (binary upgrade): it stays master, without an election.
    Resume,
    /// The instance stops because a new agent of this node takes over (binary upgrade): no
    /// priority 0 and the addresses stay, so the VIP does not move.
    HandOver,
    /// The running timer fired: Master_Down_Timer in Backup, Adver_Timer in Master.
    Timer,
    /// A valid advertisement for our VRID arrived.
    Advert {
        /// Its source address.
        from: IpAddr,
        /// Its priority.
        priority: u8,
        /// Its interval (centiseconds).
        interval_cs: u16,
    },
    /// Tracking failed (interface down, script failing without weight).
    Fault,
    /// Tracking recovered.
    FaultCleared,
    /// Tracking weights changed the effective priority.
    Priority(u8),
    /// A sync-group peer became master: follow it (keepalived sync groups).
    Takeover,
    /// A sync-group peer stepped down: step down too, telling backups with priority 0.
    Resign,
    /// Hold off preemption (true) until this node's copy of the connection table is
    /// complete, or stop holding (false).
    HoldPreempt(bool),
}

/// What the runtime must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (0 when leaving mastership).
    SendAdvert(u8),
    /// Add the virtual addresses to the interface and activate them in the data plane.
    AddAddresses,
    /// Remove them and deactivate them.
    RemoveAddresses,
    /// Announce the addresses (gratuitous ARP / unsolicited NA).
    Announce,
    /// (Re)start the single timer.
    SetTimer(Duration),
    /// Stop the timer.
    StopTimer,
    /// The state changed (log, notify scripts).
    Entered(State),
}

/// One instance's protocol state.
#[derive(Debug, Clone)]
pub struct Fsm {
    params: Params,
    state: State,
    priority: u8,
    master_adver_cs: u16,
    /// Time since start-up, for `preempt_delay`.
    now: Duration,
    started: Duration,
    /// A master that said goodbye (priority 0) and keeps its addresses until the new
    /// master is heard (make-before-break).
    leaving: bool,
    /// Preemption waits (for the connection-table copy).
    hold_preempt: bool,
}

/// One centisecond.
const CS: Duration = Duration::from_millis(10);

impl Fsm {
    /// A machine in Initialize.
    pub fn new(params: Params) -> Self {
        Fsm {
            priority: params.priority,
            master_adver_cs: params.advert_cs,
            params,
            state: State::Initialize,
            now: Duration::ZERO,
            started: Duration::ZERO,
            leaving: false,
            hold_preempt: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The effective priority.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Skew_Time (RFC 5798 6.1: (256 - Priority) * Master_Adver_Interval / 256; RFC 3768 6.1:
    /// (256 - Priority) / 256 s), in nanoseconds so no fraction of a centisecond is lost.
    pub fn skew(&self) -> Duration {
        let weight = u64::from(256 - u16::from(self.priority));
        match self.params.version {
            Version::V3 => {
                Duration::from_nanos(weight * u64::from(self.master_adver_cs) * 10_000_000 / 256)
            }
            Version::V2 => Duration::from_nanos(weight * 1_000_000_000 / 256),
        }
    }

    /// Master_Down_Interval (6.1): 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        CS * u32::from(self.master_adver_cs) * 3 + self.skew()
    }

    fn advert_interval(&self) -> Duration {
        CS * u32::from(self.params.advert_cs)
    }

    fn enter(&mut self, state: State, actions: &mut Vec<Action>) {
        self.state = state;
        actions.push(Action::Entered(state));
    }

    /// 6.4.1: the owner becomes master at once; everyone else starts as backup.
    fn start(&mut self, actions: &mut Vec<Action>) {
        self.started = self.now;
        self.master_adver_cs = self.params.advert_cs;
        if self.priority == 255 {
            self.become_master(actions);
        } else {
            actions.push(Action::SetTimer(self.master_down_interval()));
            self.enter(State::Backup, actions);
        }
    }

    /// Whether the machine said goodbye and waits for the new master before it lets its
    /// addresses go.
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// 6.4.2 (Master_Down_Timer fires) and 6.4.1 (owner): advertise, announce, take over.
    /// The addresses come first and are announced before the advertisement: a master that
    /// is leaving lets its addresses go when it hears this one, and by then the neighbours
    /// have already been told where the addresses went.
    fn become_master(&mut self, actions: &mut Vec<Action>) {
        actions.push(Action::AddAddresses);
        actions.push(Action::Announce);
        actions.push(Action::SendAdvert(self.priority));
        actions.push(Action::SetTimer(self.advert_interval()));
        self.enter(State::Master, actions);
    }

    /// The end of a goodbye: the addresses go, the machine stops.
    fn leave(&mut self, actions: &mut Vec<Action>) {
        self.leaving = false;
        actions.push(Action::StopTimer);
        actions.push(Action::RemoveAddresses);
        self.enter(State::Initialize, actions);
    }

    /// Handles `event` at `now` (time since the machine was created).
    pub fn handle(&mut self, event: Event, now: Duration) -> Vec<Action> {
        self.now = now;
        let mut actions = Vec::new();
        match (self.state, event) {
            (_, Event::HoldPreempt(hold)) => self.hold_preempt = hold,
            (_, Event::Priority(priority)) => {
                // A new priority shows in the next advertisement; a backup's own skew changes
                // with it from the next timer start.
                self.priority = priority;
            }
            (State::Initialize, Event::Startup) => self.start(&mut actions),
            (State::Initialize, Event::Resume) => {
                self.started = self.now;
                self.master_adver_cs = self.params.advert_cs;
                self.become_master(&mut actions);
            }
            (_, Event::HandOver) => {
                actions.push(Action::StopTimer);
                self.enter(State::Initialize, &mut actions);
            }
            (State::Fault, Event::FaultCleared) => self.start(&mut actions),
            (State::Backup, Event::Shutdown) | (State::Fault, Event::Shutdown) => {
                actions.push(Action::StopTimer);
                self.enter(State::Initialize, &mut actions);
            }
            (State::Master, Event::Shutdown) if !self.leaving => {
                // 6.4.3: send priority 0 so a backup takes over after its skew time instead
                // of three intervals. Make-before-break: the addresses stay (and are
                // forwarded) until the new master is heard, at most Master_Down_Interval;
                // keepalived removes them at once and loses the skew time.
                self.leaving = true;
                actions.push(Action::SendAdvert(0));
                actions.push(Action::SetTimer(self.master_down_interval()));
            }
            (State::Master, Event::Timer) if self.leaving => {
                // Nobody took over in time: leave anyway.
                self.leave(&mut actions);
            }
            (State::Master, Event::Advert { priority, .. }) if self.leaving && priority > 0 => {
                // The new master speaks: its addresses are announced, ours can go.
                self.leave(&mut actions);
            }
            (State::Master, _) if self.leaving => {}
            (State::Backup, Event::Fault) => {
                actions.push(Action::StopTimer);
                self.enter(State::Fault, &mut actions);
            }
            (State::Master, Event::Fault) => {
                // As keepalived does: tell the backups at once (priority 0), then step down.
                actions.push(Action::StopTimer);
                actions.push(Action::SendAdvert(0));
                actions.push(Action::RemoveAddresses);
                self.enter(State::Fault, &mut actions);
            }
            (State::Backup, Event::Timer) | (State::Backup, Event::Takeover) => {
                self.become_master(&mut actions)
            }
            (State::Master, Event::Resign) => {
                actions.push(Action::SendAdvert(0));
                actions.push(Action::RemoveAddresses);
                actions.push(Action::SetTimer(self.master_down_interval()));
                self.enter(State::Backup, &mut actions);
            }
            (State::Master, Event::Timer) => {
                // 6.4.3: Adver_Timer fired.
                actions.push(Action::SendAdvert(self.priority));
                actions.push(Action::SetTimer(self.advert_interval()));
            }
            (
                State::Backup,
                Event::Advert {
                    priority,
                    interval_cs,
                    ..
                },
            ) => {
                let in_preempt_delay =
                    self.now < self.started + self.params.preempt_delay || self.hold_preempt;
                if priority == 0 {
                    // 6.4.2: the master is leaving; take over after Skew_Time.
                    actions.push(Action::SetTimer(self.skew()));
                } else if !self.params.preempt || priority >= self.priority || in_preempt_delay {
                    // 6.4.2: accept this master. VRRPv3 backups learn its interval (v2 has none).
                    if self.params.version == Version::V3 {
                        self.master_adver_cs = interval_cs;
                    }
                    actions.push(Action::SetTimer(self.master_down_interval()));
                }
                // Otherwise (preempting a lower priority) discard: our timer will fire.
            }
            (
                State::Master,
                Event::Advert {
                    from,
                    priority,
                    interval_cs,
                },
            ) => {
                if priority == 0 {
                    // 6.4.3: another master left; reassert at once.
                    actions.push(Action::SendAdvert(self.priority));
                    actions.push(Action::SetTimer(self.advert_interval()));
                } else if priority > self.priority
                    || (priority == self.priority && from > self.params.local_addr)
                {
                    // 6.4.3: a better master: step down.
                    if self.params.version == Version::V3 {
                        self.master_adver_cs = interval_cs;
                    }
                    actions.push(Action::SetTimer(self.master_down_interval()));
                    actions.push(Action::RemoveAddresses);
                    self.enter(State::Backup, &mut actions);
                }
                // Otherwise discard: ours is the better claim and our adverts say so.
            }
            // Everything else (adverts in Initialize or Fault, a second Startup, ...) changes
            // nothing.
            _ => {}
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(priority: u8) -> Params {
        Params {
            version: Version::V3,
            priority,
            advert_cs: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            local_addr: "192.168.1.10".parse().unwrap(),
        }
    }

    fn advert(from: &str, priority: u8, interval_cs: u16) -> Event {
        Event::Advert {
            from: from.parse().unwrap(),
            priority,
            interval_cs,
        }
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn skew_and_master_down_are_exact() {
        // RFC 5798 6.1 with priority 100 and 1 s: skew = 156 * 100 / 256 cs = 0.609375 s.
        let fsm = Fsm::new(params(100));
        assert_eq!(fsm.skew(), Duration::from_micros(609_375));
        assert_eq!(fsm.master_down_interval(), Duration::from_micros(3_609_375));
        // RFC 3768 6.1: v2 skew = (256 - 200) / 256 s = 0.21875 s.
        let v2 = Fsm::new(Params {
            version: Version::V2,
            ..params(200)
        });
        assert_eq!(v2.skew(), Duration::from_micros(218_750));
    }

    #[test]
    fn a_binary_upgrade_hands_mastership_over_without_an_election() {
        // The old agent stops without priority 0 and leaves the addresses in place.
        let mut old = Fsm::new(params(100));
        old.handle(Event::Startup, T0);
        old.handle(Event::Timer, old.master_down_interval());
        assert_eq!(old.state(), State::Master);
        assert_eq!(
            old.handle(Event::HandOver, Duration::from_secs(5)),
            vec![Action::StopTimer, Action::Entered(State::Initialize)]
        );
        // The new one is master at once: it advertises before any backup's timer can fire.
        let mut new = Fsm::new(params(100));
        assert_eq!(
            new.handle(Event::Resume, T0),
            vec![
                Action::AddAddresses,
                Action::Announce,
                Action::SendAdvert(100),
                Action::SetTimer(Duration::from_secs(1)),
                Action::Entered(State::Master),
            ]
        );
    }

    #[test]
    fn backup_takes_over_when_master_down_timer_fires() {
        // 6.4.1 then 6.4.2.
        let mut fsm = Fsm::new(params(100));
        let down = fsm.master_down_interval();
        assert_eq!(
            fsm.handle(Event::Startup, T0),
            vec![Action::SetTimer(down), Action::Entered(State::Backup)]
        );
        assert_eq!(
            fsm.handle(Event::Timer, down),
            vec![
                Action::AddAddresses,
                Action::Announce,
                Action::SendAdvert(100),
                Action::SetTimer(Duration::from_secs(1)),
                Action::Entered(State::Master),
            ]
        );
    }

    #[test]
    fn address_owner_is_master_at_once() {
        // 6.4.1: priority 255.
        let mut fsm = Fsm::new(params(255));
        let actions = fsm.handle(Event::Startup, T0);
        assert!(actions.contains(&Action::SendAdvert(255)));
        assert_eq!(fsm.state(), State::Master);
    }

    #[test]
    fn backup_learns_the_masters_interval_in_v3() {
        // 6.4.2: Master_Adver_Interval := the advert's interval.
        let mut fsm = Fsm::new(params(100));
        fsm.handle(Event::Startup, T0);
        let actions = fsm.handle(advert("192.168.1.20", 200, 10), T0);
        // 3 * 10 cs + 156 * 10 / 256 cs = 300 ms + 60.9375 ms.
        assert_eq!(
            actions,
            vec![Action::SetTimer(
                Duration::from_micros(360_937) + Duration::from_nanos(500)
            )]
        );
    }

    #[test]
    fn priority_zero_from_the_master_means_take_over_after_skew() {
        // 6.4.2: "If the Priority in the ADVERTISEMENT is zero, set Master_Down_Timer to Skew_Time".
        let mut fsm = Fsm::new(params(100));
        fsm.handle(Event::Startup, T0);
        let skew = fsm.skew();
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 0, 100), T0),
            vec![Action::SetTimer(skew)]
        );
    }

    #[test]
    fn preempting_backup_ignores_a_lower_master_and_nopreempt_accepts_it() {
        // 6.4.2: with Preempt_Mode true a lower-priority advert is discarded.
        let mut fsm = Fsm::new(params(150));
        fsm.handle(Event::Startup, T0);
        assert_eq!(fsm.handle(advert("192.168.1.20", 100, 100), T0), vec![]);
        let mut nopreempt = Fsm::new(Params {
            preempt: false,
            ..params(150)
        });
        nopreempt.handle(Event::Startup, T0);
        let down = nopreempt.master_down_interval();
        assert_eq!(
            nopreempt.handle(advert("192.168.1.20", 100, 100), T0),
            vec![Action::SetTimer(down)]
        );
    }

    #[test]
    fn preempt_delay_holds_off_preemption_after_startup() {
        let mut fsm = Fsm::new(Params {
            preempt_delay: Duration::from_secs(10),
            ..params(150)
        });
        fsm.handle(Event::Startup, T0);
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 100, 100), Duration::from_secs(5))
                .len(),
            1,
            "accepted"
        );
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 100, 100), Duration::from_secs(11)),
            vec![],
            "discarded"
        );
    }

    #[test]
    fn master_steps_down_for_higher_priority_or_higher_address_at_equal_priority() {
        // 6.4.3.
        for (from, priority, steps_down) in [
            ("192.168.1.20", 200, true),
            ("192.168.1.20", 100, true),
            ("192.168.1.5", 100, false),
            ("192.168.1.20", 50, false),
        ] {
            let mut fsm = Fsm::new(params(100));
            fsm.handle(Event::Startup, T0);
            fsm.handle(Event::Timer, Duration::from_secs(4));
            let actions = fsm.handle(advert(from, priority, 100), Duration::from_secs(5));
            assert_eq!(
                fsm.state() == State::Backup,
                steps_down,
                "{from} priority {priority}: {actions:?}"
            );
            if steps_down {
                assert!(actions.contains(&Action::RemoveAddresses));
            } else {
                assert!(actions.is_empty());
            }
        }
    }

    #[test]
    fn clean_shutdown_of_a_master_sends_priority_zero_and_keeps_the_addresses_until_heard() {
        // 6.4.3 Shutdown_Event, make-before-break.
        let mut fsm = Fsm::new(params(100));
        fsm.handle(Event::Startup, T0);
        fsm.handle(Event::Timer, Duration::from_secs(4));
        let down = fsm.master_down_interval();
        assert_eq!(
            fsm.handle(Event::Shutdown, Duration::from_secs(5)),
            vec![Action::SendAdvert(0), Action::SetTimer(down)]
        );
        assert!(fsm.is_leaving());
        // Its own kind of goodbye from someone else, or a second shutdown, changes nothing.
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 0, 100), Duration::from_secs(5)),
            vec![]
        );
        assert_eq!(fsm.handle(Event::Shutdown, Duration::from_secs(5)), vec![]);
        // The new master (even a lower priority: it took over) speaks: the addresses go.
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 50, 100), Duration::from_secs(5)),
            vec![
                Action::StopTimer,
                Action::RemoveAddresses,
                Action::Entered(State::Initialize),
            ]
        );
        assert!(!fsm.is_leaving());
        // Nobody takes over: the bound runs out and it leaves anyway.
        let mut alone = Fsm::new(params(100));
        alone.handle(Event::Startup, T0);
        alone.handle(Event::Timer, Duration::from_secs(4));
        alone.handle(Event::Shutdown, Duration::from_secs(5));
        assert_eq!(
            alone.handle(Event::Timer, Duration::from_secs(9)),
            vec![
                Action::StopTimer,
                Action::RemoveAddresses,
                Action::Entered(State::Initialize),
            ]
        );
    }

    #[test]
    fn a_held_backup_accepts_a_lower_master_until_released() {
        let mut fsm = Fsm::new(params(150));
        fsm.handle(Event::HoldPreempt(true), T0);
        fsm.handle(Event::Startup, T0);
        let down = fsm.master_down_interval();
        // A lower-priority master is accepted while the copy is not complete.
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 100, 100), Duration::from_secs(1)),
            vec![Action::SetTimer(down)]
        );
        fsm.handle(Event::HoldPreempt(false), Duration::from_secs(2));
        // Released: it is discarded again, so the timer runs out and this node preempts.
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 100, 100), Duration::from_secs(3)),
            vec![]
        );
    }

    #[test]
    fn master_answers_a_priority_zero_advert_at_once() {
        let mut fsm = Fsm::new(params(100));
        fsm.handle(Event::Startup, T0);
        fsm.handle(Event::Timer, Duration::from_secs(4));
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 0, 100), Duration::from_secs(5)),
            vec![
                Action::SendAdvert(100),
                Action::SetTimer(Duration::from_secs(1))
            ]
        );
    }

    #[test]
    fn fault_takes_a_master_out_and_clearing_it_restarts_as_backup() {
        let mut fsm = Fsm::new(params(100));
        fsm.handle(Event::Startup, T0);
        fsm.handle(Event::Timer, Duration::from_secs(4));
        let actions = fsm.handle(Event::Fault, Duration::from_secs(5));
        assert!(
            actions.contains(&Action::SendAdvert(0)) && actions.contains(&Action::RemoveAddresses)
        );
        assert_eq!(fsm.state(), State::Fault);
        assert_eq!(
            fsm.handle(advert("192.168.1.20", 50, 100), Duration::from_secs(6)),
            vec![],
            "no election in fault"
        );
        fsm.handle(Event::FaultCleared, Duration::from_secs(7));
        assert_eq!(fsm.state(), State::Backup);
    }

    #[test]
    fn sync_group_takeover_and_resign() {
        // keepalived sync groups: a backup follows a member that became master, a master
        // follows a member that stepped down (announcing it with priority 0).
        let mut fsm = Fsm::new(params(100));
        fsm.handle(Event::Startup, T0);
        let actions = fsm.handle(Event::Takeover, T0);
        assert!(actions.contains(&Action::AddAddresses));
        assert_eq!(fsm.state(), State::Master);
        let actions = fsm.handle(Event::Resign, Duration::from_secs(1));
        assert_eq!(
            &actions[..2],
            &[Action::SendAdvert(0), Action::RemoveAddresses]
        );
        assert_eq!(fsm.state(), State::Backup);
        assert_eq!(
            fsm.handle(Event::Resign, Duration::from_secs(2)),
            vec![],
            "a backup has nothing to resign"
        );
    }

    #[test]
    fn lowered_priority_shows_in_the_next_advert() {
        // keepalived track_script weight -20.
        let mut fsm = Fsm::new(params(100));
        fsm.handle(Event::Startup, T0);
        fsm.handle(Event::Timer, Duration::from_secs(4));
        fsm.handle(Event::Priority(80), Duration::from_secs(4));
        assert_eq!(
            fsm.handle(Event::Timer, Duration::from_secs(5))[0],
            Action::SendAdvert(80)
        );
    }
}
