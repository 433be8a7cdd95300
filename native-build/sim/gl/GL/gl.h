// The two OpenGL types cudaGL.h's prototypes use, so that the simulated driver's stubs of the GL
// interop entry points (which it never implements) carry NVIDIA's own signatures without OpenGL headers.
#pragma once
typedef unsigned int GLenum;
typedef unsigned int GLuint;
