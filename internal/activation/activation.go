package activation

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/coreos/go-systemd/v22/activation"
)

// Socket is one socket passed by the service manager. Exactly one of
// Listener and PacketConn is set.
type Socket struct {
	// Name is the socket's entry in LISTEN_FDNAMES (FileDescriptorName= in
	// the .socket unit), or "LISTEN_FD_<fd>" when it has none.
	Name string
	// Listener is set for a stream socket (tcp, unix, unixpacket).
	Listener net.Listener
	// PacketConn is set for a datagram socket (udp, unixgram).
	PacketConn net.PacketConn
}

// Addr is the socket's local address.
func (s Socket) Addr() net.Addr {
	if s.Listener != nil {
		return s.Listener.Addr()
	}
	return s.PacketConn.LocalAddr()
}

// String describes the socket for logs: name, network and address.
func (s Socket) String() string {
	a := s.Addr()
	return fmt.Sprintf("%q (%s %s)", s.Name, a.Network(), a.String())
}

// Close closes the socket (this process's descriptor of it).
func (s Socket) Close() error {
	if s.Listener != nil {
		return s.Listener.Close()
	}
	return s.PacketConn.Close()
}

// Sockets returns the sockets passed to this process with LISTEN_FDS (when
// LISTEN_PID names this process), in the order of their descriptors, and
// unsets LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES. It returns nil, nil when
// nothing was passed. A descriptor that is neither a stream nor a datagram
// socket is closed and named in the error; the sockets are returned all the
// same. Call it once per process.
func Sockets() ([]Socket, error) {
	files := activation.Files(true)
	var socks []Socket
	var errs []error
	for _, f := range files {
		s := Socket{Name: f.Name()}
		if ln, err := net.FileListener(f); err == nil {
			s.Listener = ln
		} else if pc, perr := net.FilePacketConn(f); perr == nil {
			s.PacketConn = pc
		} else {
			errs = append(errs, fmt.Errorf("activation: passed descriptor %d (%q) is not a usable socket: %w", f.Fd(), f.Name(), err))
		}
		// net.File* duplicated the descriptor; ours is no longer needed.
		f.Close()
		if s.Listener != nil || s.PacketConn != nil {
			socks = append(socks, s)
		}
	}
	return socks, errors.Join(errs...)
}

// Matches reports whether the socket serves network ("tcp", "tcp4",
// "tcp6", "unix", "unixpacket", "udp", "udp4", "udp6", "unixgram") and
// addr, the arguments of a Listen call. For IP networks the ports must be
// equal and non-zero, and the IPs equal, where an empty or unspecified host
// matches any unspecified address (0.0.0.0 and [::] alike); a host name is
// resolved. tcp4 and udp4 want an IPv4 socket, tcp6 and udp6 an IPv6 one.
// For unix networks the paths must be equal once made absolute (abstract
// names, starting with '@', as they are).
func (s Socket) Matches(network, addr string) bool {
	switch a := s.Addr().(type) {
	case *net.TCPAddr:
		if s.Listener == nil || (network != "tcp" && network != "tcp4" && network != "tcp6") {
			return false
		}
		return ipMatches(network, addr, a.IP, a.Port)
	case *net.UDPAddr:
		if s.PacketConn == nil || (network != "udp" && network != "udp4" && network != "udp6") {
			return false
		}
		return ipMatches(network, addr, a.IP, a.Port)
	case *net.UnixAddr:
		if a.Net != network {
			return false
		}
		return unixPath(a.Name) == unixPath(addr)
	}
	return false
}

func ipMatches(network, addr string, ip net.IP, port int) bool {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	p, err := strconv.Atoi(portStr)
	if err != nil {
		if p, err = net.LookupPort(network, portStr); err != nil {
			return false
		}
	}
	if p == 0 || p != port {
		return false
	}
	switch network[len(network)-1] {
	case '4':
		if ip.To4() == nil {
			return false
		}
	case '6':
		if ip.To4() != nil {
			return false
		}
	}
	if host == "" {
		return ip.IsUnspecified()
	}
	want := []net.IP{net.ParseIP(host)}
	if want[0] == nil {
		if want, err = net.LookupIP(host); err != nil {
			return false
		}
	}
	for _, w := range want {
		if w.Equal(ip) || w.IsUnspecified() && ip.IsUnspecified() {
			return true
		}
	}
	return false
}

func unixPath(p string) string {
	if p == "" || p[0] == '@' {
		return p
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}
