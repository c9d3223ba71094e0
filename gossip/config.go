package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// Defaults applied by DefaultConfig and, for zero fields, by New.
const (
	DefaultBindAddr            = "127.0.0.1:7946"
	DefaultDeadNodeReclaimTime = 30 * time.Second
	DefaultJoinRetryMin        = 200 * time.Millisecond
	DefaultJoinRetryMax        = 10 * time.Second
)

// Config configures an Agent. Start from DefaultConfig; New copies it, so
// later changes to the value have no effect.
type Config struct {
	// BindAddr is the ip:port gossip listens on, UDP and TCP on the same
	// port (memberlist needs both). Port 0 picks a free port (tests).
	// Default DefaultBindAddr.
	BindAddr string
	// AdvertiseAddr is the ip:port peers use to reach this node. Default
	// BindAddr. It must be set when BindAddr is unspecified (0.0.0.0, ::),
	// and may not itself be unspecified. Port 0 means the bound port.
	AdvertiseAddr string
	// Meta is the initial meta; Meta.ID is required and becomes the
	// memberlist node name.
	Meta Meta
	// SecretKey, if set, is a 16, 24 or 32-byte AES key that encrypts and
	// authenticates all gossip. Every node needs the same key.
	SecretKey []byte
	// Label is an optional memberlist label (e.g. the cluster name) added to
	// every packet; nodes with different labels do not talk.
	Label string
	// LAN selects memberlist.DefaultLANConfig timings (DefaultConfig sets
	// it). When false, DefaultLocalConfig timings are used (loopback tests).
	LAN bool

	// Optional timing overrides; 0 keeps the memberlist default for the
	// chosen profile. Failure detection takes roughly ProbeInterval plus
	// SuspicionMult×ProbeInterval (scaled by log10 of the cluster size).
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
	// RetransmitMult and PushPullInterval are further optional overrides
	// (0 keeps the profile default). The local profile's RetransmitMult of
	// 2 hands each change to only 2 peers in clusters of under 9 nodes, so
	// with 4 or more nodes a change may reach some of them only with the
	// next push/pull (15s); multi-node tests should set 4, the LAN value.
	RetransmitMult   int
	PushPullInterval time.Duration
	// DeadNodeReclaimTime lets a dead node come back under the same name
	// with a new address after this long. Default 30s (as Consul).
	DeadNodeReclaimTime time.Duration

	// DNSConfigPath is the resolv.conf whose first nameserver (host or
	// host:port) memberlist asks first, over TCP, for every address of a
	// seed given by name, so that a name with more addresses than fit a
	// UDP answer (a Kubernetes headless Service, a DNS round robin) still
	// yields them all; it then falls back to Go's resolver (/etc/hosts,
	// then DNS). Seeds that name several addresses are joined through
	// every one that answers. Default "/etc/resolv.conf".
	DNSConfigPath string

	// JoinRetryMin and JoinRetryMax bound the exponential backoff (with
	// jitter) between attempts to join the seeds. Defaults 200ms and 10s.
	JoinRetryMin time.Duration
	JoinRetryMax time.Duration

	// Logger receives the agent's logs and memberlist's, whose "[DEBUG]",
	// "[INFO]", "[WARN]" and "[ERR]" prefixes become slog levels. Nil
	// discards them.
	Logger *slog.Logger
}

// DefaultConfig returns LAN settings bound to DefaultBindAddr. The caller
// must still set Meta.ID.
func DefaultConfig() Config {
	return Config{
		BindAddr:            DefaultBindAddr,
		Meta:                Meta{Version: MetaVersion},
		LAN:                 true,
		DeadNodeReclaimTime: DefaultDeadNodeReclaimTime,
		JoinRetryMin:        DefaultJoinRetryMin,
		JoinRetryMax:        DefaultJoinRetryMax,
	}
}

// withDefaults fills zero fields with their defaults.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	if c.DeadNodeReclaimTime == 0 {
		c.DeadNodeReclaimTime = DefaultDeadNodeReclaimTime
	}
	if c.JoinRetryMin == 0 {
		c.JoinRetryMin = DefaultJoinRetryMin
	}
	if c.JoinRetryMax == 0 {
		c.JoinRetryMax = DefaultJoinRetryMax
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks the config after zero fields take their defaults, and
// names the offending values.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	_, bindErr := netip.ParseAddrPort(c.BindAddr)
	if bindErr != nil {
		errs = append(errs, fmt.Errorf("BindAddr %q is not ip:port: %w", c.BindAddr, bindErr))
	}
	adv, err := netip.ParseAddrPort(c.AdvertiseAddr)
	switch {
	case err != nil && c.AdvertiseAddr == c.BindAddr:
		// Already reported as BindAddr.
	case err != nil:
		errs = append(errs, fmt.Errorf("AdvertiseAddr %q is not ip:port: %w", c.AdvertiseAddr, err))
	case adv.Addr().IsUnspecified() && c.AdvertiseAddr == c.BindAddr:
		errs = append(errs, fmt.Errorf("BindAddr %q is unspecified: set AdvertiseAddr to an address peers can reach", c.BindAddr))
	case adv.Addr().IsUnspecified():
		errs = append(errs, fmt.Errorf("AdvertiseAddr %q is unspecified: peers cannot reach it", c.AdvertiseAddr))
	}
	if err := c.Meta.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("SecretKey is %d bytes; it must be 16, 24 or 32", len(c.SecretKey)))
	}
	if len(c.Label) > memberlist.LabelMaxSize {
		errs = append(errs, fmt.Errorf("the Label is %d bytes; at most %d", len(c.Label), memberlist.LabelMaxSize))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", c.ProbeInterval}, {"ProbeTimeout", c.ProbeTimeout},
		{"GossipInterval", c.GossipInterval}, {"PushPullInterval", c.PushPullInterval},
		{"DeadNodeReclaimTime", c.DeadNodeReclaimTime},
		{"JoinRetryMin", c.JoinRetryMin}, {"JoinRetryMax", c.JoinRetryMax},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s (%s) is negative", d.name, d.v))
		}
	}
	if c.SuspicionMult < 0 {
		errs = append(errs, fmt.Errorf("SuspicionMult (%d) is negative", c.SuspicionMult))
	}
	if c.RetransmitMult < 0 {
		errs = append(errs, fmt.Errorf("RetransmitMult (%d) is negative", c.RetransmitMult))
	}
	if mc := c.memberlistBase(); mc.ProbeTimeout >= mc.ProbeInterval {
		errs = append(errs, fmt.Errorf("ProbeTimeout (%s) must be less than ProbeInterval (%s)", mc.ProbeTimeout, mc.ProbeInterval))
	}
	if c.JoinRetryMin > c.JoinRetryMax {
		errs = append(errs, fmt.Errorf("JoinRetryMin (%s) cannot be larger than JoinRetryMax (%s)", c.JoinRetryMin, c.JoinRetryMax))
	}
	if len(errs) > 0 {
		return fmt.Errorf("gossip config: %w", errors.Join(errs...))
	}
	return nil
}

// memberlistBase returns the memberlist profile with the timing overrides
// applied; no addresses, delegates or logger.
func (c Config) memberlistBase() *memberlist.Config {
	mc := memberlist.DefaultLocalConfig()
	if c.LAN {
		mc = memberlist.DefaultLANConfig()
	}
	if c.ProbeInterval > 0 {
		mc.ProbeInterval = c.ProbeInterval
	}
	if c.ProbeTimeout > 0 {
		mc.ProbeTimeout = c.ProbeTimeout
	}
	if c.GossipInterval > 0 {
		mc.GossipInterval = c.GossipInterval
	}
	if c.SuspicionMult > 0 {
		mc.SuspicionMult = c.SuspicionMult
	}
	if c.RetransmitMult > 0 {
		mc.RetransmitMult = c.RetransmitMult
	}
	if c.PushPullInterval > 0 {
		mc.PushPullInterval = c.PushPullInterval
	}
	mc.DeadNodeReclaimTime = c.DeadNodeReclaimTime
	return mc
}

// memberlistConfig builds the full memberlist config for a validated c.
func (c Config) memberlistConfig() *memberlist.Config {
	mc := c.memberlistBase()
	bind := netip.MustParseAddrPort(c.BindAddr)
	adv := netip.MustParseAddrPort(c.AdvertiseAddr)
	mc.Name = c.Meta.ID
	mc.BindAddr = bind.Addr().Unmap().String()
	mc.BindPort = int(bind.Port())
	mc.AdvertiseAddr = adv.Addr().Unmap().String()
	mc.AdvertisePort = int(adv.Port())
	if mc.AdvertisePort == 0 {
		// memberlist replaces it with the chosen port when BindPort is 0.
		mc.AdvertisePort = mc.BindPort
	}
	if len(c.SecretKey) > 0 {
		mc.SecretKey = append([]byte(nil), c.SecretKey...)
	}
	mc.Label = c.Label
	if c.DNSConfigPath != "" {
		mc.DNSConfigPath = c.DNSConfigPath
	}
	mc.Logger = newStdLogger(c.Logger)
	return mc
}
