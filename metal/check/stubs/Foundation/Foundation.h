// Minimal stand-in for Apple's <Foundation/Foundation.h>, declaring only
// what bridge_darwin.m uses, with the signatures of the macOS SDK. It lets
// clang syntax- and type-check the bridge on Linux (make metal-check); it
// is not a substitute for compiling against the real SDK.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef signed char BOOL;
#define YES ((BOOL)1)
#define NO ((BOOL)0)
typedef unsigned long NSUInteger;
typedef long NSInteger;
typedef const void *CFTypeRef;
#define nil ((id)0)

#define NS_RETURNS_RETAINED __attribute__((ns_returns_retained))
static inline CFTypeRef CFBridgingRetain(id X) { return (__bridge_retained CFTypeRef)X; }
static inline id CFBridgingRelease(CFTypeRef X) { return (__bridge_transfer id)X; }

@class NSString;

@protocol NSObject
- (BOOL)isEqual:(id)object;
@end

__attribute__((objc_root_class))
@interface NSObject <NSObject>
+ (instancetype)alloc;
- (instancetype)init;
@end

@interface NSString : NSObject
+ (instancetype)stringWithUTF8String:(const char *)nullTerminatedCString;
+ (instancetype)stringWithFormat:(NSString *)format, ...;
@property(readonly) const char *UTF8String;
@end

@interface NSError : NSObject
@property(readonly, copy) NSString *localizedDescription;
@end

@interface NSNull : NSObject
+ (NSNull *)null;
@end

@interface NSArray : NSObject
- (id)objectAtIndex:(NSUInteger)index;
@end

@interface NSMutableArray : NSArray
+ (instancetype)arrayWithCapacity:(NSUInteger)numItems;
- (void)addObject:(id)anObject;
@end

@interface NSDictionary : NSObject
- (id)objectForKey:(id)aKey;
@end

@interface NSMutableDictionary : NSDictionary
+ (instancetype)dictionary;
- (void)setObject:(id)anObject forKey:(id)aKey;
@end
