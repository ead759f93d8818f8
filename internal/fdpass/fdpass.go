package fdpass

import "errors"

// MaxFDs is the most descriptors one message carries: Linux's SCM_MAX_FD.
const MaxFDs = 253

// MaxHeader bounds the header of a message.
const MaxHeader = 1024

// ErrNotSupported is returned on platforms that cannot pass descriptors.
var ErrNotSupported = errors.New("fdpass: not supported on this platform")

// ErrTruncated is returned by Receive when a message carried more than it
// could take: a header longer than MaxHeader or more than MaxFDs
// descriptors. The descriptors that did arrive are closed.
var ErrTruncated = errors.New("fdpass: message truncated")
