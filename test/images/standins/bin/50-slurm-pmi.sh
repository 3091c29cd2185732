#!/bin/sh
# STAND-IN extra enroot hook (enroot @VERSION@): does nothing.
exit 0
