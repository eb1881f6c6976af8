// Everything of CFUSEDevice is in its header (static inline functions); SwiftPM wants a source.
#include "CFUSEDevice.h"
