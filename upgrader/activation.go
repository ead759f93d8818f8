package upgrader

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/cloudflare/tableflip"

	"github.com/handoff-go/handoff/internal/activation"
	"github.com/handoff-go/handoff/listener"
)

// Socket activation: the sockets systemd passed with LISTEN_FDS.
//
// A first generation adopts the sockets passed with LISTEN_FDS (and unsets
// the variables). Listen takes one whose address matches, ListenActivated one
// by name. An adopted socket is registered with tableflip under a key of its
// own (network sdKeyNetwork), so that later generations find it through
// tableflip, never through LISTEN_FDS, and so that neither tableflip nor Stop
// unlinks the path of an activated unix socket: the socket unit owns it.
// Sockets still unclaimed when the first generation is ready are reported
// (EventUnusedSocket) and closed.

// sdKeyNetwork is the network under which activated sockets are handed to the
// next generation through tableflip. It is not "unix", so tableflip never
// unlinks an activated socket's path.
const sdKeyNetwork = "systemd-activated"

// ErrNotActivated: ListenActivated found no socket passed under that name.
var ErrNotActivated = errors.New("upgrader: no socket activated under that name")

// sdActivated returns an activated socket for network and addr: on a first
// start one passed by systemd whose address matches, in a later generation
// the one its parent adopted for the same arguments.
func (u *Upgrader) sdActivated(network, addr string) (net.Listener, bool) {
	key := network + " " + addr
	if u.tf.HasParent() {
		return u.sdInherited(key)
	}
	s := &u.sd
	s.mu.Lock()
	var found *activation.Socket
	for i, sock := range s.sockets {
		if sock.Listener != nil && sock.Matches(network, addr) {
			found = &sock
			s.sockets = append(s.sockets[:i:i], s.sockets[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if found == nil {
		return nil, false
	}
	u.sdAdopt(key, *found)
	return found.Listener, true
}

// sdInherited looks up an activated socket the parent handed on under key.
func (u *Upgrader) sdInherited(key string) (net.Listener, bool) {
	ln, err := u.tf.Listener(sdKeyNetwork, key)
	if err != nil {
		u.log.Error("upgrader: inherited activated socket", "key", key, "error", err)
		return nil, false
	}
	if ln == nil {
		return nil, false
	}
	u.sdOwn(ln.Addr())
	return ln, true
}

// sdAdopt registers an activated socket with tableflip for the next
// generations.
func (u *Upgrader) sdAdopt(key string, sock activation.Socket) {
	u.sdOwn(sock.Addr())
	tl, ok := sock.Listener.(tableflip.Listener)
	var err error
	if !ok {
		err = fmt.Errorf("%T cannot be handed on", sock.Listener)
	} else {
		err = u.tf.AddListener(sdKeyNetwork, key, tl)
	}
	if err != nil {
		// Serve it all the same; only the hand-over is lost.
		u.log.Error("upgrader: activated socket will not be handed to the next generation", "socket", sock.String(), "error", err)
	}
	u.log.Info("upgrader: adopted activated socket", "socket", sock.String())
}

// sdOwn records the path of an activated unix socket, which is never
// unlinked.
func (u *Upgrader) sdOwn(a net.Addr) {
	if ua, ok := a.(*net.UnixAddr); ok && ua.Name != "" {
		u.sd.mu.Lock()
		u.sd.owned[ua.Name] = true
		u.sd.mu.Unlock()
	}
}

// sdOwnsPath reports whether path belongs to an activated socket.
func (u *Upgrader) sdOwnsPath(path string) bool {
	u.sd.mu.Lock()
	defer u.sd.mu.Unlock()
	return u.sd.owned[path]
}

// ListenActivated returns a tracked listener for a stream socket systemd
// passed under name (FileDescriptorName= in the .socket unit; an unnamed
// socket is "LISTEN_FD_<fd>"). Several sockets may share a name: each call
// takes the next one, in the order systemd passed them. Like Listen, it
// adopts the socket as if inherited, hands it to later generations (which
// make the same calls and get the same sockets), and does not accept until
// Ready. It returns an error wrapping ErrNotActivated when there is no such
// socket. Safe for concurrent use.
//
// Sockets are claimed by the first generation: one that no Listen or
// ListenActivated call claimed by the time it is ready is reported
// (EventUnusedSocket) and closed.
func (u *Upgrader) ListenActivated(name string) (*listener.Listener, error) {
	s := &u.sd
	s.mu.Lock()
	n := s.names[name]
	s.names[name] = n + 1
	key := "name " + name + " " + strconv.Itoa(n)
	var found *activation.Socket
	if !u.tf.HasParent() {
		for i, sock := range s.sockets {
			if sock.Listener != nil && sock.Name == name {
				found = &sock
				s.sockets = append(s.sockets[:i:i], s.sockets[i+1:]...)
				break
			}
		}
	}
	s.mu.Unlock()
	var inner net.Listener
	if found != nil {
		u.sdAdopt(key, *found)
		inner = found.Listener
	} else if ln, ok := u.sdInherited(key); ok {
		inner = ln
	} else {
		return nil, fmt.Errorf("%w: %q", ErrNotActivated, name)
	}
	return u.track(inner), nil
}
